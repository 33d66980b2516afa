from smartcity.cli import main

raise SystemExit(main())
