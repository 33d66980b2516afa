"""`python -m smartcity.store`: migrations by hand (Store.open() upgrades by itself).

    python -m smartcity.store upgrade [--url URL]            migrate a database to head
    python -m smartcity.store current [--url URL]            print a database's revision
    python -m smartcity.store revision -m "add camera tags" [--autogenerate] [--url URL]
        write migrations/versions/r<next>_<slug>.py; --autogenerate compares the models with a
        database at head (without --url: a scratch SQLite database migrated for the purpose)

URL defaults to $SMARTCITY_DB_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from alembic import command
from alembic.script import ScriptDirectory

from smartcity.store.engine import URL_ENV, default_url, make_engine, redact
from smartcity.store.migrate import alembic_config, current, upgrade


def _next_rev_id() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    numbers = [int(r.revision) for r in script.walk_revisions() if r.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m smartcity.store", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("upgrade", "current"):
        s = sub.add_parser(name)
        s.add_argument("--url", default=os.environ.get(URL_ENV))
    r = sub.add_parser("revision")
    r.add_argument("-m", "--message", required=True)
    r.add_argument("--autogenerate", action="store_true")
    r.add_argument("--url", default=os.environ.get(URL_ENV))
    r.add_argument("--rev-id", default=None, help="default: the next 4-digit number")
    args = p.parse_args(argv)

    if args.cmd in ("upgrade", "current"):
        if not args.url:
            p.error(f"give --url or set {URL_ENV}")
        engine = make_engine(args.url)
        try:
            with engine.connect() as conn:
                if args.cmd == "upgrade":
                    upgrade(conn)
                    conn.commit()
                print(f"{redact(args.url)}: {current(conn)}")
        finally:
            engine.dispose()
        return 0

    rev_id = args.rev_id or _next_rev_id()
    if not args.autogenerate:
        command.revision(alembic_config(), message=args.message, rev_id=rev_id)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or default_url(tmp)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                upgrade(conn)
                conn.commit()
                cfg = alembic_config(connection=conn)
                command.revision(cfg, message=args.message, rev_id=rev_id, autogenerate=True)
                conn.commit()
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
