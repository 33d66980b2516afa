"""`smartcity api`, `smartcity users ...`, `smartcity audit verify`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import yaml

from smartcity.api.settings import ApiSettings, ApiSettingsError

BOOTSTRAP_USER = "admin"


def bootstrap_admin(store: Any) -> str | None:
    """When the database has no user at all: create `admin` with a random password and return
    it (the caller prints it once; it is never stored or logged in clear)."""
    from smartcity.api.security import hash_password, new_password

    if store.users.count() > 0:
        return None
    password = new_password()
    store.users.add(BOOTSTRAP_USER, hash_password(password), "admin")
    store.audit.append(
        "system", "user.create", target=BOOTSTRAP_USER, data={"role": "admin", "bootstrap": True}
    )
    return password


def _settings(args: argparse.Namespace) -> ApiSettings:
    block: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            with open(args.config, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ApiSettingsError(f"{args.config}: {e}") from None
        if not isinstance(doc, dict):
            raise ApiSettingsError(f"{args.config}: expected a mapping at the top")
        block = dict(doc.get("api") or {})
    for name in ("data_dir", "db_url", "host", "port", "run_dir", "workers"):
        v = getattr(args, name, None)
        if v is not None:
            block[name] = v
    return ApiSettings.load(block)


def _store(args: argparse.Namespace) -> Any:
    from smartcity.store import Store

    cfg = _settings(args)
    return Store.open(cfg.db_url, data_dir=cfg.data_dir)


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from smartcity.api.app import create_app
    from smartcity.store import Store, StoreError

    try:
        cfg = _settings(args)
        os.makedirs(cfg.data_dir, exist_ok=True)
        store = Store.open(cfg.db_url, data_dir=cfg.data_dir)  # migrated here, once
    except (ApiSettingsError, StoreError, OSError) as e:
        print(f"smartcity api: {e}", file=sys.stderr)
        return 2
    if cfg.bootstrap_admin:  # here, before any worker starts: once
        pw = bootstrap_admin(store)
        if pw is not None:
            print(
                f"smartcity api: no users yet: created {BOOTSTRAP_USER!r} with the one-time "
                f"password\n\n    {pw}\n\nLog in and change it (POST /api/v1/auth/password); "
                "it is not shown again.",
                flush=True,
            )
    where = f"http://{cfg.host}:{cfg.port}/api/docs/openapi.json"
    if cfg.workers == 1:
        app = create_app(cfg, store=store, shared_dir=cfg.data_dir)
        print(f"smartcity api: {where} (1 process)", flush=True)
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
        store.close()
        return 0
    store.close()
    from smartcity.api.workers import WorkerPool, WorkerPoolError

    # the parent binds the port and starts the workers (smartcity/api/workers.py)
    print(f"smartcity api: {where} ({cfg.workers} worker processes)", flush=True)
    try:
        return WorkerPool(cfg).run()
    except WorkerPoolError as e:
        print(f"smartcity api: {e}", file=sys.stderr)
        return 2


def _read_password(args: argparse.Namespace) -> str:
    from smartcity.api.security import password_problem

    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\n")
    else:
        pw = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != pw:
            raise ValueError("the two passwords differ")
    problem = password_problem(pw)
    if problem:
        raise ValueError(problem)
    return pw


def _cmd_users_create(args: argparse.Namespace) -> int:
    from smartcity.api.security import hash_password
    from smartcity.store import StoreError

    try:
        store = _store(args)
        pw = _read_password(args)
        cams = [c for c in args.cameras.split(",") if c] if args.cameras else None
        u = store.users.add(args.username, hash_password(pw), args.role, cameras=cams)
        store.audit.append("cli", "user.create", target=u.username, data={"role": u.role})
    except (ApiSettingsError, StoreError, ValueError, OSError) as e:
        print(f"smartcity users: {e}", file=sys.stderr)
        return 2
    print(f"user {u.username!r} created ({u.role})")
    return 0


def _cmd_users_password(args: argparse.Namespace) -> int:
    from smartcity.api.security import hash_password
    from smartcity.store import StoreError

    try:
        store = _store(args)
        u = store.users.by_name(args.username)
        if u is None:
            raise ValueError(f"no user {args.username!r}")
        store.users.set_password(u.id, hash_password(_read_password(args)))
        store.audit.append("cli", "user.password_reset", target=u.username)
    except (ApiSettingsError, StoreError, ValueError, OSError) as e:
        print(f"smartcity users: {e}", file=sys.stderr)
        return 2
    print(f"password of {args.username!r} set; the user's sessions ended")
    return 0


def _cmd_users_list(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
    except (ApiSettingsError, OSError) as e:
        print(f"smartcity users: {e}", file=sys.stderr)
        return 2
    for u in store.users.list():
        cams = ",".join(u.cameras) if u.cameras is not None else "all cameras"
        state = "enabled" if u.enabled else "disabled"
        print(f"{u.id:5} {u.username:24} {u.role:12} {state:9} {cams}")
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
    except (ApiSettingsError, OSError) as e:
        print(f"smartcity audit: {e}", file=sys.stderr)
        return 2
    problems = store.audit.verify()
    n = store.audit.count()
    if problems:
        for p in problems:
            print(p)
        print(
            f"smartcity audit: {len(problems)} problems in {n} rows: the log was altered",
            file=sys.stderr,
        )
        return 1
    print(f"audit log intact: {n} rows, hash chain verified")
    return 0


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="appliance.yaml (its api: block)")
    p.add_argument("--data-dir", dest="data_dir", default=None, help="data directory")
    p.add_argument("--db-url", dest="db_url", default=None, help="database URL")


def add_api_parsers(sub: Any) -> None:
    api = sub.add_parser("api", help="serve the command-center API (docs/api.md)")
    _db_args(api)
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--run-dir", dest="run_dir", default=None, help="bus run directory")
    api.add_argument(
        "--workers", type=int, default=None, help="worker processes (default 1, docs/api.md)"
    )
    api.set_defaults(func=_cmd_api)

    users = sub.add_parser("users", help="manage API users")
    us = users.add_subparsers(dest="users_command", required=True)
    create = us.add_parser("create", help="create a user (password asked, or --password-stdin)")
    create.add_argument("username")
    create.add_argument(
        "--role", required=True, choices=["viewer", "operator", "maintenance", "admin"]
    )
    create.add_argument("--cameras", default=None, help="comma-separated ids (default: all)")
    create.add_argument("--password-stdin", action="store_true")
    _db_args(create)
    create.set_defaults(func=_cmd_users_create)
    pw = us.add_parser("set-password", help="set a user's password (ends their sessions)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    _db_args(pw)
    pw.set_defaults(func=_cmd_users_password)
    ls = us.add_parser("list", help="list users")
    _db_args(ls)
    ls.set_defaults(func=_cmd_users_list)

    audit = sub.add_parser("audit", help="the audit log")
    au = audit.add_subparsers(dest="audit_command", required=True)
    verify = au.add_parser("verify", help="check the hash chain (exit 1 when altered)")
    _db_args(verify)
    verify.set_defaults(func=_cmd_audit_verify)
