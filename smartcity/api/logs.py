"""GET /api/v1/system/logs: the tail of the appliance's JSON-lines log (smartcity run writes it:
docs/operations.md, "Logs"), filtered.

The file is untrusted input (any process that can write to it, a disk that filled mid-line):
at most TAIL_BYTES are read from its end (and from the rotated `.1` when the current file is
short), backwards from the end in blocks until `limit` records match; a line longer than
MAX_LINE_BYTES is skipped, as is every line that is not one JSON object with the record's
fields; the last line is left out while it has no newline yet (being written). What was skipped
is counted in the answer, never raised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartcity.supervisor import DEFAULT_LOG_NAME, LEVELS, LOG_FILE_ENV

#: Read at most this much of the log's end per request (both files together).
TAIL_BYTES = 8 * 1024 * 1024
#: The supervisor cuts lines at 8 KiB of text; a JSON record of it is at most about 6 times
#: that (escapes); anything longer was not written by it.
MAX_LINE_BYTES = 64 * 1024
MAX_LIMIT = 1000
BLOCK = 64 * 1024
#: Fields of a record, each cut to this many characters in the answer.
MAX_FIELD = {"ts": 40, "service": 32, "level": 16, "camera": 64, "msg": 16 * 1024}


@dataclass
class LogQuery:
    service: str | None = None
    level: str | None = None  # the lowest level shown
    camera: str | None = None
    text: str | None = None  # in msg, case-insensitive
    limit: int = 200


@dataclass
class LogTail:
    file: str
    records: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    skipped: int = 0  # not a record: not JSON, not an object, fields missing, too long
    partial: bool = False  # the last line had no newline yet (left out)
    scanned_bytes: int = 0
    complete: bool = True  # false: older lines were not looked at (limit reached, budget spent)


def log_file_path(data_dir: Path) -> Path:
    """$SMARTCITY_LOG_FILE (smartcity run sets it), else <data_dir>/smartcity.log."""
    raw = os.environ.get(LOG_FILE_ENV)
    return Path(raw) if raw else data_dir / DEFAULT_LOG_NAME


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One log line as a record, or None when it is not one."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        obj = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    rec: dict[str, Any] = {}
    for name in ("ts", "service", "level", "msg"):
        v = obj.get(name)
        if not isinstance(v, str):
            return None
        rec[name] = v[: MAX_FIELD[name]]
    if rec["level"] not in LEVELS:
        return None
    cam = obj.get("camera")
    if cam is not None and not isinstance(cam, str):
        return None
    rec["camera"] = cam[: MAX_FIELD["camera"]] if cam is not None else None
    return rec


def _matches(rec: dict[str, Any], q: LogQuery, min_level: int, text: str | None) -> bool:
    if q.service is not None and rec["service"] != q.service:
        return False
    if LEVELS.index(rec["level"]) < min_level:
        return False
    if q.camera is not None and rec["camera"] != q.camera:
        return False
    return text is None or text in rec["msg"].casefold()


def _lines_backward(path: Path, first: bool, budget: list[int], out: LogTail) -> Iterator[bytes]:
    """The file's complete lines, newest first, read backwards in blocks while budget[0] (bytes,
    shared by the files) lasts. first: the current file, whose unfinished last line is being
    written (out.partial); in a rotated file such a line is counted as skipped."""
    with path.open("rb") as f:
        pos = os.fstat(f.fileno()).st_size
        discard: str | None = None  # the line at the cut: "partial" or "long"
        if pos:
            f.seek(pos - 1)
            if f.read(1) != b"\n":
                discard = "partial"
        carry = b""
        while pos > 0:
            if budget[0] <= 0:
                out.complete = False
                return
            n = min(BLOCK, pos, budget[0])
            pos -= n
            f.seek(pos)
            block = f.read(n)
            budget[0] -= n
            out.scanned_bytes += n
            if discard is not None:
                idx = block.rfind(b"\n")
                if idx < 0:
                    continue  # the discarded line goes on further back
                if discard == "partial" and first:
                    out.partial = True
                else:
                    out.skipped += 1
                discard, carry, block = None, b"", block[: idx + 1]
            parts = (block + carry).split(b"\n")
            carry = parts[0]
            for line in reversed(parts[1:]):
                if line.strip():
                    yield line
            if len(carry) > MAX_LINE_BYTES:
                discard, carry = "long", b""
        if discard is not None:  # the whole file was one line that is not a record
            if discard == "partial" and first:
                out.partial = True
            else:
                out.skipped += 1
        elif carry.strip():
            yield carry


def read_tail(path: Path, q: LogQuery, *, budget: int = TAIL_BYTES) -> LogTail:
    """The last q.limit records matching q, oldest first: the current file read backwards,
    then the rotated `.1`. FileNotFoundError when there is no log file at all."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be 1 to {MAX_LIMIT}, got {q.limit}")
    if q.level is not None and q.level not in LEVELS:
        raise ValueError(f"level: must be one of {', '.join(LEVELS)}, got {q.level!r}")
    min_level = LEVELS.index(q.level) if q.level else 0
    text = q.text.casefold() if q.text else None
    out = LogTail(file=str(path))
    found: list[dict[str, Any]] = []  # newest first
    left = [budget]
    for i, f in enumerate((path, path.with_name(path.name + ".1"))):
        try:
            lines = _lines_backward(f, i == 0, left, out)
            for line in lines:
                rec = parse_record(line)
                if rec is None:
                    out.skipped += 1
                elif _matches(rec, q, min_level, text):
                    found.append(rec)
                    if len(found) >= q.limit:
                        out.complete = False
                        break
        except FileNotFoundError:
            if i == 0:
                raise
        if len(found) >= q.limit or not out.complete:
            break
    found.reverse()
    out.records = found
    return out
