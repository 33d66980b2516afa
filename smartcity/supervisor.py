"""`smartcity run --config appliance.yaml`: the appliance in one command (docs/operations.md).

The supervisor process runs the bus broker itself and starts `engine`, `incidents` and `api` as
child processes (`python -m smartcity <service> ...`), each in a process group of its own:

- a child that exits while the appliance runs is started again after a delay that doubles from
  `restart.initial_s` up to `restart.max_s`, and falls back to `initial_s` once the child has run
  `restart.stable_s`; the other children are not touched;
- `restart.crash_loop.restarts` exits within `restart.crash_loop.within_s` are a crash loop: a
  system incident (`service_crash_loop`, camera `appliance`, key `service:<name>`) is written to
  the store, then published as `incident.service_crash_loop`; the child is still restarted, every
  `max_s`;
- SIGTERM or SIGINT stops every child (SIGTERM to each process group, SIGKILL to what is left
  after STOP_GRACE_S), then the broker, within 10 s; exit code 0. SIGHUP is passed to the engine
  (it reads its camera file again);
- every line a child writes becomes one log record {ts, service, level, camera, msg}, written as
  a JSON line to `log.file` and in a readable form to the console; the supervisor's own events
  are records of the service `supervisor`. URL credentials (`scheme://user:pass@`) never reach
  the log.

Tests supervise stand-in commands: `Supervisor([Service(name, argv), ...], ...)` in Python, or
the `test_services` block of appliance.yaml through the command.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

import yaml

from smartcity import checks

SERVICES = ("engine", "incidents", "api")
SUPERVISOR = "supervisor"
LEVELS = ("info", "warning", "error")
#: A log line longer than this (bytes) is cut.
MAX_LINE_BYTES = 8 * 1024
#: Lines of each child kept for the crash-loop incident (the last ones before it exited).
LAST_LINES = 10
LAST_LINE_CHARS = 500
#: SIGTERM to SIGKILL when stopping; the broker and the rest take well under a second after it,
#: so the whole stop stays within 10 s.
STOP_GRACE_S = 7.0
STOP_KILL_WAIT_S = 1.0
CRASH_LOOP_TYPE = "service_crash_loop"
LOG_FILE_MODE = 0o640
#: The log file when log.file is not set: <data_dir>/smartcity.log; it is rotated at
#: log.max_mb (smartcity.log -> .1 -> ... -> .<keep>, the oldest dropped).
DEFAULT_LOG_NAME = "smartcity.log"
DEFAULT_LOG_MAX_MB = 20.0
DEFAULT_LOG_KEEP = 5
#: Told to the api it starts: the appliance file (backups) and the log file (the logs view).
APPLIANCE_CONFIG_ENV = "SMARTCITY_APPLIANCE_CONFIG"
LOG_FILE_ENV = "SMARTCITY_LOG_FILE"
#: The control socket in the run directory (unix stream socket, 0600): one JSON request line,
#: one JSON answer line. {"op": "restart", "service": NAME} -> {"ok": true, "service", "pid"}
#: or {"ok": false, "error": "..."}.
CONTROL_NAME = "control"
CONTROL_MAX_BYTES = 4096
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
ONE_TIME_PASSWORD_HIDDEN = "[the one-time password is shown on the console only]"


class ApplianceConfigError(ValueError):
    """A bad appliance.yaml; the message starts with the field."""


# ---------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0
    crash_loop_restarts: int = 5
    crash_loop_within_s: float = 120.0


@dataclass(frozen=True)
class LogSettings:
    file: Path | None = None  # appliance.yaml: <data_dir>/smartcity.log when not set
    level: str = "info"
    console: bool = True
    max_mb: float = DEFAULT_LOG_MAX_MB  # rotate when the file reaches this size ...
    keep: int = DEFAULT_LOG_KEEP  # ... keeping this many older files


@dataclass(frozen=True)
class ServiceSettings:
    enabled: bool = True
    config: Path | None = None  # engine.yaml / incidents.yaml; the api reads appliance.yaml


@dataclass(frozen=True)
class ApplianceConfig:
    path: Path  # the appliance file itself (absolute)
    data_dir: Path
    run_dir: Path
    db_url: str | None
    log: LogSettings
    services: Mapping[str, ServiceSettings]
    api: Any  # smartcity.api.settings.ApiSettings, as the api will see it
    restart: RestartPolicy
    test_services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tests only


_TOP = {"data_dir", "run_dir", "db_url", "log", "services", "api", "restart", "test_services"}
#: Set at the top level of appliance.yaml, not in its api: block (one value for every service).
_API_FROM_TOP = ("data_dir", "run_dir", "db_url")


def _mapping(v: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ApplianceConfigError(f"{where}: must be a mapping, got {type(v).__name__}")
    unknown = sorted(str(k) for k in v if k not in allowed)
    if unknown:
        raise ApplianceConfigError(
            f"{where + '.' if where else ''}{unknown[0]}: unknown field "
            f"(known: {', '.join(sorted(allowed))})"
        )
    return dict(v)


def _path(v: Any, where: str, base: Path) -> Path:
    if not isinstance(v, str) or not v.strip():
        raise ApplianceConfigError(f"{where}: must be a path, got {v!r}")
    p = Path(v).expanduser()
    return p if p.is_absolute() else base / p


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ApplianceConfigError(f"{where}: must be true or false, got {v!r}")
    return v


def _number(v: Any, where: str, *, integer: bool = False) -> float:
    try:
        f = checks.number(v, integer=integer, positive=True)
    except checks.NumberError as e:
        raise ApplianceConfigError(f"{where}: {e}") from None
    if f > 86400 * 365:  # a year
        raise ApplianceConfigError(f"{where}: {v} is too large")
    return f


def _restart(v: Any) -> RestartPolicy:
    d = _mapping(v, "restart", {"initial_s", "max_s", "stable_s", "crash_loop"})
    base = RestartPolicy()
    loop = _mapping(d.get("crash_loop"), "restart.crash_loop", {"restarts", "within_s"})
    policy = RestartPolicy(
        initial_s=_number(d.get("initial_s", base.initial_s), "restart.initial_s"),
        max_s=_number(d.get("max_s", base.max_s), "restart.max_s"),
        stable_s=_number(d.get("stable_s", base.stable_s), "restart.stable_s"),
        crash_loop_restarts=int(
            _number(
                loop.get("restarts", base.crash_loop_restarts),
                "restart.crash_loop.restarts",
                integer=True,
            )
        ),
        crash_loop_within_s=_number(
            loop.get("within_s", base.crash_loop_within_s), "restart.crash_loop.within_s"
        ),
    )
    if policy.max_s < policy.initial_s:
        raise ApplianceConfigError(
            f"restart.max_s: {policy.max_s:g} is less than restart.initial_s {policy.initial_s:g}"
        )
    return policy


def _log(v: Any, base: Path, data_dir: Path) -> LogSettings:
    d = _mapping(v, "log", {"file", "level", "console", "max_mb", "keep"})
    level = d.get("level", "info")
    if level not in LEVELS:
        raise ApplianceConfigError(f"log.level: must be one of {', '.join(LEVELS)}, got {level!r}")
    f = d.get("file")
    keep = d.get("keep", DEFAULT_LOG_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 100:
        raise ApplianceConfigError(f"log.keep: must be a whole number from 1 to 100, got {keep!r}")
    return LogSettings(
        file=data_dir / DEFAULT_LOG_NAME if f is None else _path(f, "log.file", base),
        level=level,
        console=_bool(d.get("console", True), "log.console"),
        max_mb=_number(d.get("max_mb", DEFAULT_LOG_MAX_MB), "log.max_mb"),
        keep=keep,
    )


def _services(v: Any, base: Path, stand_ins: bool) -> dict[str, ServiceSettings]:
    """stand_ins: test_services replace the services; their files are not needed."""
    d = _mapping(v, "services", set(SERVICES))
    out: dict[str, ServiceSettings] = {}
    for name in SERVICES:
        allowed = {"enabled"} if name == "api" else {"enabled", "config"}
        s = _mapping(d.get(name), f"services.{name}", allowed)
        enabled = _bool(s.get("enabled", True), f"services.{name}.enabled")
        config = None
        if name != "api":
            if s.get("config") is None:
                if enabled and not stand_ins:
                    raise ApplianceConfigError(
                        f"services.{name}.config: missing (the {name} configuration file)"
                    )
            else:
                config = _path(s["config"], f"services.{name}.config", base)
                if enabled and not stand_ins and not config.is_file():
                    raise ApplianceConfigError(f"services.{name}.config: no file {config}")
        out[name] = ServiceSettings(enabled=enabled, config=config)
    return out


def _test_services(v: Any) -> dict[str, tuple[str, ...]]:
    if v is None:
        return {}
    if not isinstance(v, Mapping) or not v:
        raise ApplianceConfigError("test_services: must map service names to commands")
    out: dict[str, tuple[str, ...]] = {}
    for name, argv in v.items():
        where = f"test_services.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
            raise ApplianceConfigError(f"{where}: a name of 1-32 letters, digits, _ or -")
        if name == SUPERVISOR:
            raise ApplianceConfigError(f"{where}: the name is reserved")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) and a for a in argv)
        ):
            raise ApplianceConfigError(f"{where}: must be a command, a list of strings")
        out[name] = tuple(argv)
    return out


def parse_appliance_config(data: Any, path: str | os.PathLike[str]) -> ApplianceConfig:
    """Check the whole document (appliance.yaml, read); relative paths are relative to path's
    folder. ApplianceConfigError names the first field at fault."""
    from smartcity.api.settings import ApiSettings, ApiSettingsError

    path = Path(path).resolve()
    base = path.parent
    if not isinstance(data, Mapping):
        raise ApplianceConfigError("appliance.yaml must be a mapping at the top")
    d = _mapping(data, "", _TOP)
    if "data_dir" not in d:
        raise ApplianceConfigError("data_dir: missing (the database and evidence folder)")
    data_dir = _path(d["data_dir"], "data_dir", base)
    if "run_dir" in d:
        run_dir = _path(d["run_dir"], "run_dir", base)
    else:
        from smartcity.bus.defaults import default_run_dir

        run_dir = default_run_dir()
    db_url = d.get("db_url")
    if db_url is not None and (not isinstance(db_url, str) or "://" not in db_url):
        raise ApplianceConfigError(
            "db_url: must be a database URL (sqlite:///..., postgresql+psycopg://...)"
        )
    api_block = d.get("api")
    if api_block is not None and not isinstance(api_block, Mapping):
        raise ApplianceConfigError("api: must be a mapping")
    api_block = dict(api_block or {})
    for k in _API_FROM_TOP:
        if k in api_block:
            raise ApplianceConfigError(
                f"api.{k}: set {k} at the top of appliance.yaml (every service uses it)"
            )
    try:
        api = ApiSettings.load({**api_block, "data_dir": str(data_dir), "run_dir": str(run_dir)})
    except ApiSettingsError as e:
        raise ApplianceConfigError(str(e)) from None
    stand_ins = _test_services(d.get("test_services"))
    return ApplianceConfig(
        path=path,
        data_dir=data_dir,
        run_dir=run_dir,
        db_url=db_url,
        log=_log(d.get("log"), base, data_dir),
        services=_services(d.get("services"), base, bool(stand_ins)),
        api=api,
        restart=_restart(d.get("restart")),
        test_services=stand_ins,
    )


def load_appliance_config(path: str | os.PathLike[str]) -> ApplianceConfig:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ApplianceConfigError(f"{path}: cannot read the file: {e}") from None
    return parse_appliance_config(data, path)


def check_service_configs(cfg: ApplianceConfig) -> tuple[list[str], list[str]]:
    """Load the enabled services' own files as they will at start: (errors, warnings), each
    naming the service's config field."""
    errors: list[str] = []
    warnings: list[str] = []
    if cfg.test_services:
        return errors, warnings
    eng, inc = cfg.services["engine"], cfg.services["incidents"]
    if eng.enabled and eng.config is not None:
        from smartcity.engine.process import EngineConfigError, load_engine_config

        try:
            settings = load_engine_config(eng.config)
        except (EngineConfigError, ValueError, OSError) as e:
            errors.append(f"services.engine.config ({eng.config}): {e}")
        else:
            if not settings.cameras and not settings.cameras_from_store:
                warnings.append(f"services.engine.config ({eng.config}): no cameras")
    if inc.enabled and inc.config is not None:
        from smartcity.incidents.config import IncidentsConfigError, load_incidents_config

        try:
            isettings = load_incidents_config(inc.config)
        except (IncidentsConfigError, ValueError, OSError) as e:
            errors.append(f"services.incidents.config ({inc.config}): {e}")
        else:
            if (
                isettings.database is None
                and Path(isettings.data_dir).resolve() != Path(cfg.data_dir).resolve()
                and cfg.db_url is None
            ):
                warnings.append(
                    f"services.incidents.config ({inc.config}): data_dir {isettings.data_dir} "
                    f"is not the appliance's data_dir {cfg.data_dir}: the api will not see its "
                    "incidents and evidence"
                )
    return errors, warnings


# ---------------------------------------------------------------------------------- log lines
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s]*@")
_LEVEL_AT_START = re.compile(
    r"^\s*\[?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]?(?::|\s)", re.IGNORECASE
)
_LEVEL_IN_LINE = re.compile(r"\s-\s(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\s-\s")
_CAMERA_PATTERNS = (
    re.compile(r"""\bcam(?:era)?(?:_id)?=['"]?([A-Za-z0-9_.\-]{1,64})"""),
    re.compile(r"""\bcam(?:era)?(?:_id)?:?\s*['"]([A-Za-z0-9_.\-]{1,64})['"]"""),
    re.compile(r"\bcameras\.([A-Za-z0-9_\-]{1,64})\."),
)


def redact_urls(text: str) -> str:
    """Every `scheme://user:password@` (or `scheme://user@`) becomes `scheme://***@`."""
    return _URL_USERINFO.sub(r"\1***@", text)


def line_level(text: str, stderr: bool) -> str:
    """info, warning or error: the level Python's logging (or uvicorn) wrote at the line's start
    or as `... - LEVEL - ...`; else warning for stderr, info for stdout."""
    m = _LEVEL_AT_START.match(text) or _LEVEL_IN_LINE.search(text)
    if m:
        word = m.group(1).upper()
        if word in ("ERROR", "CRITICAL", "FATAL"):
            return "error"
        if word in ("WARNING", "WARN"):
            return "warning"
        return "info"
    if text.startswith("Traceback (most recent call last)"):
        return "error"
    return "warning" if stderr else "info"


def line_camera(text: str) -> str | None:
    """The camera a line names (`camera 'gate-1'`, `cam=gate-1`, `cameras.gate-1.`), if any."""
    for p in _CAMERA_PATTERNS:
        m = p.search(text)
        if m:
            return m.group(1).rstrip(".")
    return None


def _now_iso(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class LogStream:
    """One stream of records for the supervisor and its children: JSON lines to `file`
    (appended, created 0640) and a readable form to `console`. Thread-safe.

    The file is rotated when it reaches `max_bytes` (None: never): `file` becomes `file.1`,
    `file.1` becomes `file.2` ... up to `file.<keep>`, and a new `file` is started. A record is
    never split between two files."""

    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        *,
        level: str = "info",
        console: TextIO | None = None,
        max_bytes: int | None = None,
        keep: int = DEFAULT_LOG_KEEP,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self._min = LEVELS.index(level)
        self._lock = threading.Lock()
        self._console = console
        self._file: IO[bytes] | None = None
        self.path = Path(file) if file is not None else None
        self.max_bytes = max_bytes
        self.keep = keep
        self._size = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        self._file_failed = False
        self._rotate_failed = False

    def _open(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        """Under the lock, after a write took the file to max_bytes or more."""
        assert self.path is not None and self._file is not None
        try:
            self._size = os.fstat(self._file.fileno()).st_size  # logrotate may have truncated
            if self.max_bytes is None or self._size < self.max_bytes:
                return
            self._file.close()
            self._file = None
            for i in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        except OSError as e:
            if not self._rotate_failed:  # say so once; the file keeps growing
                self._rotate_failed = True
                print(f"smartcity run: log file {self.path}: cannot rotate: {e}", file=sys.stderr)
        if self._file is None:
            self._open()

    def emit(
        self,
        service: str,
        level: str,
        msg: str,
        camera: str | None = None,
        *,
        console_msg: str | None = None,
        force: bool = False,
    ) -> dict[str, Any] | None:
        """Write one record (msg redacted); console_msg, when given, is what the console shows
        instead (already redacted by the caller). Returns the record, or None when below the
        level (force: written whatever its level)."""
        if LEVELS.index(level) < self._min and not force:
            return None
        now = time.time()
        rec: dict[str, Any] = {
            "ts": _now_iso(now),
            "service": service,
            "level": level,
            "camera": camera,
            "msg": redact_urls(msg),
        }
        data = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        shown = rec["msg"] if console_msg is None else console_msg
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S")
        text = f"{stamp} {service:<10} {level.upper():<7} {shown}\n"
        with self._lock:
            if self._file is not None and not self._file_failed:
                try:
                    self._file.write(data)
                    self._size += len(data)
                    if self.max_bytes is not None and self._size >= self.max_bytes:
                        self._rotate()
                except OSError as e:  # disk full: say so once, keep the console going
                    self._file_failed = True
                    print(f"smartcity run: log file {self.path}: {e}", file=sys.stderr)
            if self._console is not None:
                try:
                    self._console.write(text)
                    self._console.flush()
                except (OSError, ValueError):
                    self._console = None
        return rec

    def line(
        self, service: str, raw: str, *, stderr: bool, secret: bool = False, force: bool = False
    ) -> dict[str, Any] | None:
        """A line a child wrote: level and camera read from it, URLs redacted. secret: the line
        goes to the console only (the file gets a placeholder); force: whatever its level."""
        text = redact_urls(raw)
        level = line_level(text, stderr)
        camera = line_camera(text)
        shown = ONE_TIME_PASSWORD_HIDDEN if secret else text
        return self.emit(
            service, level, shown, camera, console_msg=text if secret else None, force=force
        )

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# ---------------------------------------------------------------------------------- services
@dataclass(frozen=True)
class Service:
    """One supervised command. env is added to the inherited environment; reload: SIGHUP to
    the supervisor is passed on to it."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    reload: bool = False


# The engine's malloc: at most 4 arenas (glibc's default is 8 per core). Its decoder threads
# each take an arena of their own otherwise, and the free space stranded across the arenas is
# what kept its resident size creeping up; with 4 the growth over 10 minutes of 16 streams was
# +0.56 % against +0.98 % (bench/README.md, memory.py). An environment that sets its own value
# keeps it.
ENGINE_MALLOC_ENV = {"MALLOC_ARENA_MAX": "4"}


def services_for(cfg: ApplianceConfig) -> list[Service]:
    """The commands `smartcity run` supervises for this configuration."""
    if cfg.test_services:
        return [Service(name, argv) for name, argv in cfg.test_services.items()]
    py = (sys.executable, "-m", "smartcity")
    run_dir = str(cfg.run_dir)
    out: list[Service] = []
    for name in ("engine", "incidents"):
        s = cfg.services[name]
        if s.enabled:
            argv = (*py, name, "--config", str(s.config), "--run-dir", run_dir)
            env = {}
            if name == "engine":
                env = {k: v for k, v in ENGINE_MALLOC_ENV.items() if k not in os.environ}
            out.append(Service(name, argv, env=env, reload=name == "engine"))
    if cfg.services["api"].enabled:
        argv = (*py, "api", "--config", str(cfg.path), "--data-dir", str(cfg.data_dir))
        env = {APPLIANCE_CONFIG_ENV: str(cfg.path)}
        if cfg.log.file is not None:
            env[LOG_FILE_ENV] = str(cfg.log.file)
        out.append(Service("api", (*argv, "--run-dir", run_dir), env=env))
    return out


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None  # the running process, None between a death and its restart
    restarts: int  # exits while the appliance ran (each one restarted)
    last_exit_code: int | None  # negative: killed by that signal
    crash_loop: bool
    delays: tuple[float, ...]  # the restart delays chosen so far, in order
    pids: tuple[int, ...]  # every process started, in order
    requested_restarts: int = 0  # restarts asked for on the control socket (not in `restarts`)


@dataclass(frozen=True)
class CrashLoop:
    service: str
    restarts: int
    within_s: float
    last_exit_code: int | None
    last_lines: tuple[str, ...]
    t_ns: int


@dataclass
class _Child:
    service: Service
    backoff: float
    proc: subprocess.Popen[bytes] | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    started_at: float = 0.0
    next_start: float = 0.0
    exits: deque[float] = field(default_factory=deque)
    crash_loop: bool = False
    restarts: int = 0
    last_exit_code: int | None = None
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_LINES))
    delays: list[float] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    restart_requested: bool = False
    stop_sent_at: float | None = None  # SIGTERM sent for a requested restart
    killed: bool = False
    requested_restarts: int = 0


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "could not start"
    if rc < 0:
        try:
            return f"ended by {signal.Signals(-rc).name}"
        except ValueError:
            return f"ended by signal {-rc}"
    return f"exited with code {rc}"


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Reporter:
    """Writes crash-loop incidents to the store and then publishes them, on a thread of its own
    (a slow database never holds up restarts or a stop). The publisher connects at start, so
    that subscriptions have reached it when the first report comes."""

    def __init__(self, run_dir: Path, data_dir: Path, db_url: str | None, log: LogStream) -> None:
        self._run_dir, self._data_dir, self._db_url, self._log = run_dir, data_dir, db_url, log
        self._queue: queue.Queue[CrashLoop | None] = queue.Queue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-loop-reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5.0)

    def report(self, crash: CrashLoop) -> None:
        self._queue.put(crash)

    def stop(self, timeout_s: float) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from smartcity.bus import Publisher, publisher_endpoint

        store: Any = None
        try:
            pub = Publisher(publisher_endpoint(self._run_dir))
        except Exception as e:  # noqa: BLE001 - reported; the store is still written
            self._log.emit(SUPERVISOR, "error", f"cannot publish on the bus: {e}")
            pub = None
        self._ready.set()
        try:
            while (crash := self._queue.get()) is not None:
                try:
                    if store is None:
                        from smartcity.store import Store

                        store = Store.open(self._db_url, data_dir=self._data_dir)
                    self._one(store, pub, crash)
                except Exception as e:  # noqa: BLE001 - logged; supervision goes on
                    self._log.emit(
                        SUPERVISOR,
                        "error",
                        f"the crash loop of {crash.service} could not be recorded: "
                        f"{type(e).__name__}: {e}",
                    )
        finally:
            if pub is not None:
                pub.close()
            if store is not None:
                store.close()

    def _one(self, store: Any, pub: Any, crash: CrashLoop) -> None:
        from smartcity.bus import IncidentEvent

        rec, state = record_crash_loop(store, crash)
        self._log.emit(
            SUPERVISOR,
            "error",
            f"system incident {rec.id} ({CRASH_LOOP_TYPE}, service:{crash.service}) "
            + ("opened" if state == "open" else f"updated, count {rec.count}"),
        )
        if pub is None:
            return
        details: dict[str, str | int | float | bool | None] = {
            "service": crash.service,
            "restarts": crash.restarts,
            "last_exit_code": crash.last_exit_code,
            "last_lines": "\n".join(crash.last_lines),
            "message": rec.details.get("message", ""),
            "severity": rec.severity,
            "count": rec.count,
            "incident_state": rec.state,
        }
        if state == "update":
            details["change"] = "merged"
        pub.publish(
            IncidentEvent(
                type=CRASH_LOOP_TYPE,
                seq=0,
                id=rec.id,
                cam=rec.camera_id,
                state=state,
                t_ns=crash.t_ns,
                details=details,
            )
        )


def record_crash_loop(store: Any, crash: CrashLoop) -> tuple[Any, str]:
    """The crash loop as a system incident: opened (state "open"), or merged into the active
    one of the same service (state "update"). Returns (IncidentRecord, state)."""
    from smartcity.incidents.lifecycle import SYSTEM_CAMERA, ensure_system_camera, priority_of
    from smartcity.store import DuplicateError, utc_from_ns

    ensure_system_camera(store)
    key = f"service:{crash.service}"
    at = utc_from_ns(crash.t_ns)
    details = {
        "message": f"{crash.service} exited {crash.restarts} times within "
        f"{crash.within_s:g} s; it is restarted at the longest delay",
        "service": crash.service,
        "restarts": crash.restarts,
        "last_exit_code": crash.last_exit_code,
        "last_lines": list(crash.last_lines),
    }
    for _ in range(3):  # create, or merge into the active one (which may close meanwhile)
        try:
            rec = store.incidents.create(
                type=CRASH_LOOP_TYPE,
                camera_id=SYSTEM_CAMERA,
                key=key,
                at=at,
                severity="high",
                priority=priority_of("high"),
                details=details,
                actor=SUPERVISOR,
            )
            return rec, "open"
        except DuplicateError:
            active = store.incidents.find_active(SYSTEM_CAMERA, CRASH_LOOP_TYPE, key)
            if active is None:
                continue
            from smartcity.store import InvalidTransitionError

            try:
                rec = store.incidents.merge(active.id, at=at, details=details, actor=SUPERVISOR)
            except InvalidTransitionError:
                continue
            return rec, "update"
    raise RuntimeError(f"the {CRASH_LOOP_TYPE} incident of {key} kept changing state")


class _Control:
    """The control socket: a unix stream socket in the run directory (0600; the run directory
    is 0700 and the supervisor's user's), one request per connection, served on a thread."""

    def __init__(self, path: Path, handler: Any, log: LogStream, timeout_s: float = 2.0) -> None:
        self.path, self._handler, self._log, self._timeout_s = path, handler, log, timeout_s
        self._stop = threading.Event()
        self._sock: Any = None
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)

    def start(self) -> None:
        import socket
        import stat

        try:  # a socket left by a supervisor that was killed
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread.start()
        self._log.emit(SUPERVISOR, "info", f"control socket {self.path}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
        try:
            self.path.unlink()
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except (OSError, ValueError) as e:  # a client gone, a bad request
                    self._log.emit(SUPERVISOR, "warning", f"control socket: {e}")

    def _one(self, conn: Any) -> None:
        conn.settimeout(self._timeout_s)
        data = b""
        while b"\n" not in data and len(data) <= CONTROL_MAX_BYTES:
            chunk = conn.recv(CONTROL_MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > CONTROL_MAX_BYTES:
            answer: dict[str, Any] = {
                "ok": False,
                "error": f"the request is longer than {CONTROL_MAX_BYTES} bytes",
            }
        else:
            try:
                req = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                answer = {"ok": False, "error": f"the request is not JSON: {e}"}
            else:
                answer = self._handler(req)
        conn.sendall(json.dumps(answer).encode() + b"\n")


# ---------------------------------------------------------------------------------- supervisor
class Supervisor:
    """Runs the broker and keeps `services` running until stopped.

    sup = Supervisor(services, run_dir=..., data_dir=..., log=LogStream(...))
    sup.run(stop_event)    # blocks: start, supervise until stop_event is set, stop everything
    """

    def __init__(
        self,
        services: Sequence[Service],
        *,
        run_dir: str | os.PathLike[str],
        data_dir: str | os.PathLike[str],
        db_url: str | None = None,
        restart: RestartPolicy | None = None,
        log: LogStream | None = None,
        poll_s: float = 0.05,
        stop_grace_s: float = STOP_GRACE_S,
        control: bool = True,
    ) -> None:
        names = [s.name for s in services]
        if len(set(names)) != len(names) or SUPERVISOR in names:
            raise ValueError(f"service names must be unique and not {SUPERVISOR!r}: {names}")
        self.run_dir = Path(run_dir)
        self.data_dir = Path(data_dir)
        self.db_url = db_url
        self.restart = restart or RestartPolicy()
        self.log = log or LogStream(console=None)
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s
        self._children = [_Child(s, backoff=self.restart.initial_s) for s in services]
        self._lock = threading.Lock()
        self._broker: Any = None
        self._reporter: _Reporter | None = None
        self._reload = threading.Event()
        self._control: _Control | None = None
        self.control = control
        self.started = threading.Event()
        self.stop_seconds: float | None = None  # how long the last stop took

    @classmethod
    def from_config(cls, cfg: ApplianceConfig, log: LogStream) -> Supervisor:
        return cls(
            services_for(cfg),
            run_dir=cfg.run_dir,
            data_dir=cfg.data_dir,
            db_url=cfg.db_url,
            restart=cfg.restart,
            log=log,
        )

    # ------------------------------------------------------------------ public
    def status(self) -> dict[str, ServiceStatus]:
        with self._lock:
            return {
                c.service.name: ServiceStatus(
                    name=c.service.name,
                    pid=c.proc.pid if c.proc is not None else None,
                    restarts=c.restarts,
                    last_exit_code=c.last_exit_code,
                    crash_loop=c.crash_loop,
                    delays=tuple(c.delays),
                    pids=tuple(c.pids),
                    requested_restarts=c.requested_restarts,
                )
                for c in self._children
            }

    def request_restart(self, name: str) -> dict[str, Any]:
        """Stop the service (SIGTERM, SIGKILL after stop_grace_s) and start it again at once,
        without a backoff delay and without counting it as an exit (the control socket's
        `restart`). Thread-safe; the supervision loop does the work."""
        with self._lock:
            c = next((c for c in self._children if c.service.name == name), None)
            if c is None:
                known = ", ".join(c.service.name for c in self._children) or "none"
                return {"ok": False, "error": f"no service {name!r} (supervised: {known})"}
            c.restart_requested = True
            pid = c.proc.pid if c.proc is not None else None
        self.log.emit(SUPERVISOR, "info", f"restart of {name} requested")
        return {"ok": True, "service": name, "pid": pid}

    def control_request(self, req: Any) -> dict[str, Any]:
        """One control-socket request (untrusted: checked here)."""
        if not isinstance(req, dict):
            return {"ok": False, "error": "the request must be a JSON object"}
        op = req.get("op")
        if op != "restart":
            return {"ok": False, "error": f"op: unknown operation {op!r} (known: restart)"}
        name = req.get("service")
        if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
            return {"ok": False, "error": "service: a name of 1-32 letters, digits, _ or -"}
        return self.request_restart(name)

    def request_reload(self) -> None:
        """Pass SIGHUP on to the services marked `reload` (the engine); safe in a signal
        handler."""
        self._reload.set()

    def run(self, stop: threading.Event) -> None:
        """Start, supervise until `stop` is set, then stop everything (also on an error)."""
        try:
            self._start()
            while not stop.is_set():
                self._tick(time.monotonic())
                stop.wait(self.poll_s)
        finally:
            self._stop()

    # ------------------------------------------------------------------ start / stop
    def _start(self) -> None:
        from smartcity.bus import Broker, ensure_run_dir

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        ensure_run_dir(self.run_dir)
        self._broker = Broker(self.run_dir).start()
        self.log.emit(
            SUPERVISOR,
            "info",
            f"broker started: publishers {self._broker.xsub_endpoint}, subscribers "
            f"{self._broker.xpub_endpoint}",
        )
        self._reporter = _Reporter(self.run_dir, self.data_dir, self.db_url, self.log)
        self._reporter.start()
        if self.control:
            control = _Control(self.run_dir / CONTROL_NAME, self.control_request, self.log)
            try:
                control.start()
                self._control = control
            except OSError as e:  # restarts from the admin page are lost, nothing else
                self.log.emit(SUPERVISOR, "error", f"no control socket {control.path}: {e}")
        names = ", ".join(c.service.name for c in self._children) or "none"
        self.log.emit(SUPERVISOR, "info", f"supervising {names}")
        self.started.set()

    def _env(self, service: Service) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["SMARTCITY_RUN_DIR"] = str(self.run_dir)
        if self.db_url:
            env["SMARTCITY_DB_URL"] = self.db_url
        env.update(service.env)
        return env

    def _spawn(self, c: _Child, now: float) -> None:
        s = c.service
        try:
            proc = subprocess.Popen(
                s.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(s),
                process_group=0,
                close_fds=True,
            )
        except OSError as e:
            self.log.emit(SUPERVISOR, "error", f"cannot start {s.name}: {e}")
            with self._lock:
                c.started_at = now
            self._exited(c, None, now)
            return
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(
                target=self._read, args=(c, proc.stdout, False), name=f"{s.name}-out", daemon=True
            ),
            threading.Thread(
                target=self._read, args=(c, proc.stderr, True), name=f"{s.name}-err", daemon=True
            ),
        ]
        with self._lock:
            c.proc = proc
            c.readers = readers
            c.started_at = now
            c.pids.append(proc.pid)
        for t in readers:
            t.start()
        self.log.emit(SUPERVISOR, "info", f"started {s.name} (pid {proc.pid}): {' '.join(s.argv)}")

    def _read(self, c: _Child, stream: IO[bytes], stderr: bool) -> None:
        name = c.service.name
        skipping = False  # the rest of a line that was cut
        password_next = False  # `smartcity api` prints its one-time admin password
        try:
            while True:
                chunk = stream.readline(MAX_LINE_BYTES)
                if not chunk:
                    break
                complete = chunk.endswith(b"\n")
                if skipping:
                    skipping = not complete
                    continue
                text = chunk.decode("utf-8", "replace").rstrip("\r\n")
                if not complete and len(chunk) >= MAX_LINE_BYTES:
                    text += " [line cut at 8 KiB]"
                    skipping = True
                if not text.strip():
                    continue  # blank lines are not records
                secret = password_next
                password_next = "one-time password" in text and "created" in text
                self.log.line(
                    name, text, stderr=stderr, secret=secret, force=secret or password_next
                )
                shown = ONE_TIME_PASSWORD_HIDDEN if secret else redact_urls(text)
                with self._lock:
                    c.last_lines.append(shown[:LAST_LINE_CHARS])
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def _stop(self) -> None:
        t0 = time.monotonic()
        if self._control is not None:
            self._control.stop()
            self._control = None
        deadline = t0 + self.stop_grace_s
        running = [c for c in self._children if c.proc is not None and c.proc.poll() is None]
        for c in running:
            assert c.proc is not None
            self.log.emit(SUPERVISOR, "info", f"stopping {c.service.name} (pid {c.proc.pid})")
            _killpg(c.proc.pid, signal.SIGTERM)
        while running and time.monotonic() < deadline:
            time.sleep(0.02)
            running = [c for c in running if c.proc is not None and c.proc.poll() is None]
        for c in running:
            self._kill_stuck(c)
        for c in self._children:
            if c.proc is None:
                continue
            try:
                rc: int | None = c.proc.wait(STOP_KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                rc = None
                self.log.emit(SUPERVISOR, "error", f"{c.service.name} (pid {c.proc.pid}) hangs")
            self._reap(c, 0.5)
            self.log.emit(
                SUPERVISOR,
                "info",
                f"{c.service.name} stopped ({_exit_text(rc) if rc is not None else 'hung'})",
            )
            with self._lock:
                c.proc = None
                c.last_exit_code = rc
        if self._reporter is not None:
            self._reporter.stop(1.0)
        if self._broker is not None:
            try:
                self._broker.stop()
            except RuntimeError as e:
                self.log.emit(SUPERVISOR, "error", str(e))
            self._broker = None
        self.stop_seconds = time.monotonic() - t0
        self.log.emit(SUPERVISOR, "info", f"stopped in {self.stop_seconds:.2f} s")

    def _reap(self, c: _Child, join_s: float) -> None:
        """After the group leader exited: SIGKILL what is left of its process group, let the
        readers take the last lines."""
        if c.proc is not None:
            _killpg(c.proc.pid, signal.SIGKILL)
        for t in c.readers:
            t.join(join_s)

    # ------------------------------------------------------------------ supervision
    def _tick(self, now: float) -> None:
        reload = self._reload.is_set()
        if reload:
            self._reload.clear()
        for c in self._children:
            if c.proc is not None:
                rc = c.proc.poll()
                if rc is None:
                    self._requested_stop(c, now)
                    if reload and c.service.reload:
                        self.log.emit(SUPERVISOR, "info", f"SIGHUP passed to {c.service.name}")
                        _killpg(c.proc.pid, signal.SIGHUP)
                    settled = c.backoff == self.restart.initial_s and not c.exits
                    if not settled and now - c.started_at >= self.restart.stable_s:
                        self._stable(c)
                    continue
                self._reap(c, 1.0)
                if c.restart_requested:
                    self._stopped_on_request(c, rc, now)
                else:
                    self._exited(c, rc, now)
            elif now >= c.next_start or c.restart_requested:
                with self._lock:
                    c.restart_requested = False
                self._spawn(c, now)

    def _kill_stuck(self, c: _Child) -> None:
        """SIGKILL for a child still running stop_grace_s after its SIGTERM."""
        assert c.proc is not None
        self.log.emit(
            SUPERVISOR,
            "warning",
            f"{c.service.name} (pid {c.proc.pid}) did not stop within "
            f"{self.stop_grace_s:g} s: killed",
        )
        _killpg(c.proc.pid, signal.SIGKILL)

    def _requested_stop(self, c: _Child, now: float) -> None:
        """A running child whose restart was asked for: SIGTERM, then SIGKILL after the grace."""
        assert c.proc is not None
        if not c.restart_requested:
            return
        if c.stop_sent_at is None:
            self.log.emit(
                SUPERVISOR, "info", f"stopping {c.service.name} (pid {c.proc.pid}) to restart it"
            )
            _killpg(c.proc.pid, signal.SIGTERM)
            c.stop_sent_at = now
        elif not c.killed and now - c.stop_sent_at >= self.stop_grace_s:
            self._kill_stuck(c)
            c.killed = True

    def _stopped_on_request(self, c: _Child, rc: int | None, now: float) -> None:
        """Started again on the next tick: no backoff, not an exit of the crash-loop count."""
        with self._lock:
            pid = c.proc.pid if c.proc is not None else None
            c.proc = None
            c.readers = []
            c.last_exit_code = rc
            c.restart_requested = False
            c.stop_sent_at = None
            c.killed = False
            c.requested_restarts += 1
            c.next_start = now
        self.log.emit(
            SUPERVISOR,
            "info",
            f"{c.service.name} (pid {pid}) {_exit_text(rc)} on request; starting it again",
        )

    def _stable(self, c: _Child) -> None:
        if c.crash_loop:
            self.log.emit(
                SUPERVISOR,
                "info",
                f"{c.service.name} has run {self.restart.stable_s:g} s: its crash loop is over",
            )
        with self._lock:
            c.backoff = self.restart.initial_s
            c.exits.clear()
            c.crash_loop = False

    def _exited(self, c: _Child, rc: int | None, now: float) -> None:
        p = self.restart
        ran = now - c.started_at
        if ran >= p.stable_s:
            self._stable(c)
        with self._lock:
            pid = c.proc.pid if c.proc is not None else None
            c.proc = None
            c.readers = []
            c.restarts += 1
            c.last_exit_code = rc
            c.exits.append(now)
            while c.exits and now - c.exits[0] > p.crash_loop_within_s:
                c.exits.popleft()
            delay = c.backoff
            c.backoff = min(c.backoff * 2, p.max_s)
            new_loop = len(c.exits) >= p.crash_loop_restarts and not c.crash_loop
            if new_loop:
                c.crash_loop = True
            if c.crash_loop:
                delay = p.max_s
            c.next_start = now + delay
            c.delays.append(delay)
            exits = len(c.exits)
            last_lines = tuple(c.last_lines)
        name = c.service.name
        who = f"{name} (pid {pid})" if pid is not None else name
        self.log.emit(
            SUPERVISOR,
            "warning" if not c.crash_loop else "error",
            f"{who} {_exit_text(rc)} after {ran:.1f} s; restart in {delay:g} s",
        )
        if new_loop:
            self.log.emit(
                SUPERVISOR,
                "error",
                f"{name} is in a crash loop: {exits} exits within {p.crash_loop_within_s:g} s; "
                f"reported as a system incident, restarted every {p.max_s:g} s",
            )
            if self._reporter is not None:
                self._reporter.report(
                    CrashLoop(
                        service=name,
                        restarts=exits,
                        within_s=p.crash_loop_within_s,
                        last_exit_code=rc,
                        last_lines=last_lines,
                        t_ns=time.time_ns(),
                    )
                )


# ---------------------------------------------------------------------------------- command
def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the appliance: the bus broker, and engine, incidents and api supervised",
        description="Starts the broker and supervises the services of appliance.yaml "
        "(docs/operations.md); SIGTERM or SIGINT stops everything.",
    )
    p.add_argument("--config", required=True, help="appliance.yaml")
    p.add_argument(
        "--check",
        action="store_true",
        help="check appliance.yaml and the services' configuration files, then exit",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_appliance_config(args.config)
    except ApplianceConfigError as e:
        print(f"smartcity run: {args.config}: {e}", file=sys.stderr)
        return 2
    errors, warnings = check_service_configs(cfg)
    for w in warnings:
        print(f"smartcity run: warning: {w}", file=sys.stderr)
    for err in errors:
        print(f"smartcity run: {err}", file=sys.stderr)
    if errors:
        return 2
    if args.check:
        names = ", ".join(s.name for s in services_for(cfg)) or "none"
        print(f"smartcity run: {cfg.path} is valid; services: {names}")
        return 0
    try:
        log = LogStream(
            cfg.log.file,
            level=cfg.log.level,
            console=sys.stdout if cfg.log.console else None,
            max_bytes=int(cfg.log.max_mb * 1024 * 1024),
            keep=cfg.log.keep,
        )
    except OSError as e:
        print(f"smartcity run: log.file: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    sup = Supervisor.from_config(cfg, log)

    def on_stop(sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: sup.request_reload())
    log.emit(SUPERVISOR, "info", f"smartcity run --config {cfg.path} (pid {os.getpid()})")
    for w in warnings:
        log.emit(SUPERVISOR, "warning", w)
    try:
        sup.run(stop)
    except Exception as e:  # noqa: BLE001 - the broker or the run dir: say what, exit 1
        log.emit(SUPERVISOR, "error", f"{type(e).__name__}: {e}")
        return 1
    finally:
        log.close()
    return 0
