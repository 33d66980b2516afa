"""Import historical crash records from a CSV file (docs/roadsafety.md: format, mapping, limits).

    report = import_csv(path.read_bytes(), source="polda-metro-2024.csv", store=store)
    report.inserted, report.duplicates, report.errors   # errors: [(line, message), ...]

The file is untrusted: its size, row count and field lengths are capped; a bad row is reported
with its 1-based line number in the file and a message naming the column, and the other rows are
imported; a file that cannot be read as a whole (too big, not UTF-8/UTF-16, a header without a
required column) is refused with one error and nothing is imported.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smartcity.store.crashes import (
    CRASH_SEVERITIES,
    MAX_COUNT,
    MAX_ROAD,
    MAX_SEGMENT_ID,
    MAX_SOURCE_REF,
    CrashRow,
)
from smartcity.store.errors import InvalidInputError

if TYPE_CHECKING:
    from smartcity.store.store import Store

#: Largest file accepted (bytes, before decoding).
MAX_BYTES = 16 * 1024 * 1024
#: Most data rows accepted (blank lines not counted).
MAX_ROWS = 200_000
#: Most columns a header may have.
MAX_COLUMNS = 200
#: Longest value accepted in a column that is read (the date-time, numbers, severity); the text
#: columns have their own limits (road 200, segment_id 128, id 128 characters).
MAX_FIELD = 64
#: Errors kept in a report (the count of all of them is `error_count`).
MAX_ERRORS = 1000
#: The default time zone of date-times without an offset: Western Indonesian Time (WIB).
DEFAULT_TZ = "Asia/Jakarta"

#: Our fields and the header names looked for when no mapping names their column (compared
#: case-insensitively, blanks, '-' and '.' counting as '_'). `date` + `time` are the alternative
#: to one `occurred_at` column.
COLUMNS: dict[str, tuple[str, ...]] = {
    "occurred_at": ("occurred_at", "datetime", "date_time", "timestamp", "waktu_kejadian"),
    "date": ("date", "tanggal", "tgl"),
    "time": ("time", "jam", "pukul", "waktu"),
    "latitude": ("latitude", "lat", "lintang"),
    "longitude": ("longitude", "lon", "lng", "long", "bujur"),
    "severity": ("severity", "keparahan", "tingkat_keparahan"),
    "vehicles": ("vehicles", "vehicles_involved", "kendaraan", "jumlah_kendaraan"),
    "casualties": ("casualties", "korban", "jumlah_korban"),
    "road": ("road", "road_name", "jalan", "nama_jalan"),
    "segment_id": ("segment_id", "segment", "ruas", "ruas_id"),
    "id": ("id", "record_id", "crash_id", "no_laporan", "nomor_laporan"),
}
REQUIRED = ("latitude", "longitude", "severity")  # + occurred_at, or date and time

#: Severity spellings (compared case-insensitively, blanks collapsed, '_' and '-' as blanks).
SEVERITY_SPELLINGS: dict[str, str] = {
    **dict.fromkeys(
        ("fatal", "fatality", "killed", "death", "meninggal", "meninggal dunia", "md"), "fatal"
    ),
    **dict.fromkeys(
        ("serious", "serious injury", "severe", "major", "luka berat", "lb", "berat"), "serious"
    ),
    **dict.fromkeys(
        ("minor", "slight", "minor injury", "slight injury", "luka ringan", "lr", "ringan"),
        "minor",
    ),
    **dict.fromkeys(
        (
            "damage only",
            "property damage only",
            "pdo",
            "damage",
            "kerugian materi",
            "kerugian material",
            "kerugian materiil",
            "materi",
            "materiil",
        ),
        "damage_only",
    ),
}

#: Indonesian time zone abbreviations accepted after a date-time.
ZONE_ABBREVIATIONS = {"WIB": "Asia/Jakarta", "WITA": "Asia/Makassar", "WIT": "Asia/Jayapura"}


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    rows_read: int  # data rows in the file (blank lines not counted)
    inserted: int
    duplicates: int  # stored already, or repeated in the file
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message), first 1000
    error_count: int = 0  # all errors, also those beyond the first MAX_ERRORS
    refused: bool = False  # the file as a whole was refused: nothing imported

    @property
    def ok(self) -> bool:
        return not self.refused and self.error_count == 0


@dataclass(slots=True)
class ParsedCsv:
    """What `parse_csv` found: the good rows with their line numbers, and the errors."""

    rows: list[tuple[int, CrashRow]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0
    rows_read: int = 0
    refused: bool = False
    delimiter: str = ","
    columns: dict[str, str] = field(default_factory=dict)  # our field -> their header name

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((line, message))

    def refuse(self, line: int, message: str) -> ParsedCsv:
        self.rows.clear()
        self.errors = [(line, message)]
        self.error_count = 1
        self.refused = True
        return self


class _RowError(ValueError):
    pass


def _norm_header(name: str) -> str:
    return re.sub(r"[\s.\-]+", "_", name.strip().casefold()).strip("_")


def _norm_word(value: str) -> str:
    return " ".join(value.replace("_", " ").replace("-", " ").casefold().split())


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(f"unknown time zone {tz!r}") from None


# ------------------------------------------------------------------- decoding the bytes


def _read_all(data: bytes | str | IO[bytes] | IO[str], max_bytes: int) -> bytes | str:
    if isinstance(data, bytes | str):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    chunk = data.read(max_bytes + 1)
    if isinstance(chunk, bytearray | memoryview):
        chunk = bytes(chunk)
    if not isinstance(chunk, bytes | str):
        raise InvalidInputError(f"expected bytes, text or a file, got {type(data).__name__}")
    return chunk


def _decode(raw: bytes, encoding: str) -> str:
    """UTF-8 (a BOM is dropped), or UTF-16 when the file starts with its BOM."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    if encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig"):
        return raw.decode("utf-8-sig")
    return raw.decode(encoding)


def _sniff_delimiter(header: str) -> str:
    """The separator of a header line: the most frequent of ';', ',', tab and '|' outside
    quotes (',' when none is found: a one-column file)."""
    counts = dict.fromkeys(";,\t|", 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda c: (counts[c], c == ","))
    return best if counts[best] else ","


# ------------------------------------------------------------------- values


_DMY = re.compile(
    r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T]+(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?)?$"
)
_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]+(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?)?$")
_TIME = re.compile(r"^(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?$")


def _split_zone(value: str) -> tuple[str, tzinfo | None]:
    """'14:30 WITA' -> ('14:30', Asia/Makassar); no zone name -> (value, None)."""
    parts = value.rsplit(None, 1)
    if len(parts) == 2 and parts[1].upper() in ZONE_ABBREVIATIONS:
        return parts[0], ZoneInfo(ZONE_ABBREVIATIONS[parts[1].upper()])
    return value, None


def _localise(dt: datetime, tz: tzinfo) -> datetime:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def _parse_datetime(value: str, tz: tzinfo) -> datetime:
    """ISO 8601 (with or without an offset), 'YYYY-MM-DD HH:MM[:SS]', 'DD/MM/YYYY HH:MM[:SS]'
    ('.' or '-' also separate the date, '.' the time), each optionally followed by WIB, WITA or
    WIT. A date without a time of day is refused."""
    text, zone = _split_zone(value)
    m = _DMY.match(text) or _YMD.match(text)
    if m:
        a, mo, c, hh, mm, ss = m.groups()
        if hh is None:
            raise _RowError("no time of day")
        y, d = (a, c) if len(a) == 4 else (c, a)
        return _localise(
            datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss or 0)), zone or tz
        )
    if not any(ch in text for ch in "T: "):
        raise _RowError("no time of day")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None and zone is not None:
        raise _RowError("both an offset and a zone name")
    return _localise(dt, zone or tz)


def _parse_date(value: str) -> date:
    m = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", value)
    if m:
        return date(int(m[3]), int(m[2]), int(m[1]))
    return date.fromisoformat(value)


def _parse_time(value: str) -> tuple[time, tzinfo | None]:
    text, zone = _split_zone(value)
    m = _TIME.match(text)
    if not m:
        raise ValueError(value)
    return time(int(m[1]), int(m[2]), int(m[3] or 0)), zone


def _parse_float(value: str, decimal_comma: bool) -> float:
    if decimal_comma and value.count(",") == 1 and "." not in value:
        value = value.replace(",", ".")
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value):
        raise ValueError(value)
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(value)
    return v


def _parse_count(value: str, decimal_comma: bool) -> int:
    v = _parse_float(value, decimal_comma)
    if v != int(v):
        raise ValueError(value)
    return int(v)


# ------------------------------------------------------------------- parsing


def _resolve_columns(
    header: list[str], mapping: Mapping[str, str] | None, out: ParsedCsv
) -> dict[str, int] | str:
    """our field -> column index; a string is the (refusing) error."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        by_name.setdefault(_norm_header(name), []).append(i)
    mapping = dict(mapping or {})
    for key, col in mapping.items():
        if key not in COLUMNS:
            raise InvalidInputError(
                f"mapping: unknown field {key!r}; fields are {', '.join(COLUMNS)}"
            )
        if not isinstance(col, str) or not col.strip():
            raise InvalidInputError(f"mapping: {key!r} must name a column")
    found: dict[str, int] = {}
    for key, aliases in COLUMNS.items():
        if key in mapping:
            hits = by_name.get(_norm_header(mapping[key]), [])
            if not hits:
                return f"the mapping's column {mapping[key]!r} for {key} is not in the header"
            if len(hits) > 1:
                return f"the header has column {mapping[key]!r} {len(hits)} times"
            found[key] = hits[0]
            continue
        names = [a for a in aliases if a in by_name]
        if len(names) > 1:
            cols = " and ".join(repr(header[by_name[a][0]].strip()) for a in names)
            return f"columns {cols} both look like {key}: give a mapping for {key}"
        if names:
            hits = by_name[names[0]]
            if len(hits) > 1:
                return f"the header has column {header[hits[0]].strip()!r} {len(hits)} times"
            found[key] = hits[0]
    for key in REQUIRED:
        if key not in found:
            return (
                f"the header has no {key} column (looked for "
                f"{', '.join(COLUMNS[key])}; give a mapping)"
            )
    if "occurred_at" in found:
        for key in ("date", "time"):
            if key in mapping:
                return f"both an occurred_at and a {key} column are mapped: map one of them"
            found.pop(key, None)  # a date-time column wins over separate date/time columns
    elif "date" not in found or "time" not in found:
        missing = "time" if "date" in found else "occurred_at"
        return (
            f"the header has no {missing} column (looked for {', '.join(COLUMNS[missing])}"
            + ("; or date and time columns" if missing == "occurred_at" else "")
            + "; give a mapping)"
        )
    used: dict[int, str] = {}
    for key, i in found.items():
        if i in used:
            return f"column {header[i].strip()!r} is mapped to both {used[i]} and {key}"
        used[i] = key
    out.columns = {k: header[i].strip() for k, i in found.items()}
    return found


def _row(
    fields_: list[str],
    cols: dict[str, int],
    header: list[str],
    severities: Mapping[str, str],
    tz: tzinfo,
    decimal_comma: bool,
    latest: datetime,
) -> CrashRow:
    def get(key: str) -> str | None:
        i = cols.get(key)
        if i is None:
            return None
        v = fields_[i].strip()
        return v or None

    def name(key: str) -> str:
        return repr(header[cols[key]].strip())

    def need(key: str) -> str:
        v = get(key)
        if v is None:
            raise _RowError(f"column {name(key)} ({key}): missing value")
        return v

    for key, limit in (("road", MAX_ROAD), ("segment_id", MAX_SEGMENT_ID), ("id", MAX_SOURCE_REF)):
        v = get(key)
        if v is not None and len(v) > limit:
            raise _RowError(f"column {name(key)} ({key}): longer than {limit} characters")
    for key in cols:
        v = get(key)
        if key not in ("road", "segment_id", "id") and v is not None and len(v) > MAX_FIELD:
            raise _RowError(f"column {name(key)} ({key}): longer than {MAX_FIELD} characters")

    # when
    if "occurred_at" in cols:
        raw = need("occurred_at")
        try:
            at = _parse_datetime(raw, tz)
        except _RowError as e:
            raise _RowError(f"column {name('occurred_at')} (occurred_at): {e} in {raw!r}") from None
        except ValueError:
            raise _RowError(
                f"column {name('occurred_at')} (occurred_at): {raw!r} is not a date-time "
                "(ISO 8601, YYYY-MM-DD HH:MM[:SS] or DD/MM/YYYY HH:MM[:SS])"
            ) from None
    else:
        raw_d, raw_t = need("date"), need("time")
        try:
            day = _parse_date(raw_d)
        except ValueError:
            raise _RowError(
                f"column {name('date')} (date): {raw_d!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)"
            ) from None
        try:
            hm, zone = _parse_time(raw_t)
        except ValueError:
            raise _RowError(
                f"column {name('time')} (time): {raw_t!r} is not a time (HH:MM[:SS])"
            ) from None
        at = _localise(datetime.combine(day, hm), zone or tz)
    if at.year < 1950 or at > latest:
        raise _RowError(
            f"column {name('occurred_at' if 'occurred_at' in cols else 'date')}: "
            f"{at.isoformat()} is not a plausible crash time (1950 .. now)"
        )

    # where
    pos: dict[str, float] = {}
    for key, lim in (("latitude", 90.0), ("longitude", 180.0)):
        raw = need(key)
        try:
            num = _parse_float(raw, decimal_comma)
        except ValueError:
            raise _RowError(f"column {name(key)} ({key}): {raw!r} is not a number") from None
        if not -lim <= num <= lim:
            raise _RowError(f"column {name(key)} ({key}): {raw} not in [-{lim:g}, {lim:g}]")
        pos[key] = num
    if pos["latitude"] == 0.0 and pos["longitude"] == 0.0:
        raise _RowError(f"columns {name('latitude')}, {name('longitude')}: 0, 0 is no position")

    # how bad
    raw = need("severity")
    sev = severities.get(_norm_word(raw))
    if sev is None:
        raise _RowError(
            f"column {name('severity')} (severity): unknown severity {raw!r} (known: "
            "fatal, serious/luka berat, minor/luka ringan, damage_only/kerugian materi/pdo, ...)"
        )
    counts: dict[str, int | None] = {}
    for key in ("vehicles", "casualties"):
        raw_c = get(key)
        if raw_c is None:
            counts[key] = None
            continue
        try:
            n = _parse_count(raw_c, decimal_comma)
        except ValueError:
            raise _RowError(
                f"column {name(key)} ({key}): {raw_c!r} is not a whole number"
            ) from None
        if not 0 <= n <= MAX_COUNT:
            raise _RowError(f"column {name(key)} ({key}): {n} not in 0..{MAX_COUNT}")
        counts[key] = n
    return CrashRow(
        occurred_at=at,
        latitude=pos["latitude"],
        longitude=pos["longitude"],
        severity=sev,
        vehicles=counts["vehicles"],
        casualties=counts["casualties"],
        road=get("road"),
        segment_id=get("segment_id"),
        source_ref=get("id"),
    )


def _severity_table(severities: Mapping[str, str] | None) -> dict[str, str]:
    table = dict(SEVERITY_SPELLINGS)
    table.update({s: s for s in CRASH_SEVERITIES})
    for spelling, sev in (severities or {}).items():
        if sev not in CRASH_SEVERITIES:
            raise InvalidInputError(
                f"severities: {spelling!r} maps to {sev!r}; expected one of "
                f"{', '.join(CRASH_SEVERITIES)}"
            )
        table[_norm_word(str(spelling))] = sev
    return table


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields); blank lines skipped. `reader` is a csv.reader."""
    last = 0
    for fields_ in reader:
        line = last + 1
        last = reader.line_num  # type: ignore[attr-defined]
        if not any(f.strip() for f in fields_):  # blank, or only separators
            continue
        yield line, fields_


def parse_csv(
    data: bytes | str | IO[bytes] | IO[str],
    *,
    mapping: Mapping[str, str] | None = None,
    severities: Mapping[str, str] | None = None,
    default_tz: str | tzinfo = DEFAULT_TZ,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    max_bytes: int = MAX_BYTES,
    max_rows: int = MAX_ROWS,
    now: datetime | None = None,
) -> ParsedCsv:
    """Read and check a crash CSV without storing it (`import_csv` stores what this finds).

    mapping: {our field: their column} for fields whose column has another name (the others are
    looked for under their default names, `COLUMNS`); severities: {their spelling: our severity},
    added to (and overriding) `SEVERITY_SPELLINGS`; default_tz: the zone of date-times without an
    offset or zone name; delimiter: None to detect it from the header line; now: the latest
    plausible crash time (default: now + 1 day).
    """
    tz = _zone(default_tz)
    sev_table = _severity_table(severities)
    latest = (now or datetime.now(UTC)) + timedelta(days=1)
    out = ParsedCsv()
    raw = _read_all(data, max_bytes)
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        return out.refuse(0, f"file larger than {max_bytes} bytes: split it")
    if isinstance(raw, bytes):
        try:
            text = _decode(raw, encoding)
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            return out.refuse(
                line,
                f"not {encoding} text (byte {e.start}); save the file as CSV UTF-8",
            )
        except LookupError:
            raise InvalidInputError(f"unknown encoding {encoding!r}") from None
    else:
        text = raw.removeprefix("\ufeff")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        return out.refuse(line, "a NUL character: not a CSV text file")

    stream = io.StringIO(text, newline="")
    # header: the first non-blank line
    header_line = 0
    first = ""
    for header_line, first in enumerate(stream, start=1):  # noqa: B007
        if first.strip():
            break
    else:
        return out.refuse(1, "the file is empty: expected a header line")
    out.delimiter = delimiter or _sniff_delimiter(first)
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter=out.delimiter, quotechar='"', doublequote=True)
    decimal_comma = out.delimiter != ","
    records = _records(reader)
    try:
        first_record = next(records, None)
        if first_record is None:
            return out.refuse(header_line, "the file has no header line")
        line, header = first_record
        if len(header) > MAX_COLUMNS:
            return out.refuse(line, f"the header has more than {MAX_COLUMNS} columns")
        cols = _resolve_columns(header, mapping, out)
        if isinstance(cols, str):
            return out.refuse(line, f"header: {cols}")
        for line, fields_ in records:
            out.rows_read += 1
            if out.rows_read > max_rows:
                return out.refuse(line, f"more than {max_rows} rows: split the file")
            if len(fields_) != len(header):
                more = "too many" if len(fields_) > len(header) else "too few"
                out.error(
                    line,
                    f"{more} fields ({len(fields_)}, the header has {len(header)})",
                )
                continue
            try:
                row = _row(fields_, cols, header, sev_table, tz, decimal_comma, latest)
            except _RowError as e:
                out.error(line, str(e))
                continue
            out.rows.append((line, row))
    except csv.Error as e:
        line = reader.line_num
        return out.refuse(line, f"unreadable CSV ({e})")
    return out


def import_csv(
    data: bytes | str | IO[bytes] | IO[str],
    *,
    source: str,
    store: Store,
    mapping: Mapping[str, str] | None = None,
    severities: Mapping[str, str] | None = None,
    default_tz: str | tzinfo = DEFAULT_TZ,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    max_bytes: int = MAX_BYTES,
    max_rows: int = MAX_ROWS,
    now: datetime | None = None,
) -> ImportReport:
    """Import a crash CSV into `store.crashes` under the name `source` (one transaction; see
    `parse_csv` for the options). Good rows are stored, bad rows reported by line; importing the
    same file again adds nothing (`duplicates`)."""
    if not isinstance(source, str) or not 1 <= len(source.strip()) <= 128:
        raise InvalidInputError("source: give the import a name (1-128 characters)")
    parsed = parse_csv(
        data,
        mapping=mapping,
        severities=severities,
        default_tz=default_tz,
        delimiter=delimiter,
        encoding=encoding,
        max_bytes=max_bytes,
        max_rows=max_rows,
        now=now,
    )
    inserted = duplicates = 0
    if parsed.rows:
        inserted, duplicates = store.crashes.add_many([r for _, r in parsed.rows], source)
    return ImportReport(
        source=source,
        rows_read=parsed.rows_read,
        inserted=inserted,
        duplicates=duplicates,
        errors=parsed.errors,
        error_count=parsed.error_count,
        refused=parsed.refused,
    )


def describe_columns() -> dict[str, Any]:
    """The default column names and severity spellings (for an API's help or an upload form)."""
    return {
        "columns": {k: list(v) for k, v in COLUMNS.items()},
        "required": [*REQUIRED, "occurred_at (or date and time)"],
        "severities": {
            s: sorted(k for k, v in SEVERITY_SPELLINGS.items() if v == s) for s in CRASH_SEVERITIES
        },
        "limits": {"bytes": MAX_BYTES, "rows": MAX_ROWS, "columns": MAX_COLUMNS},
    }
