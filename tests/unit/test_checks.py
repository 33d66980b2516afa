"""smartcity.checks.number: the shared number check, and the five parsers that wrap it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smartcity.checks import NumberError, number, requirement


@pytest.mark.parametrize(
    ("v", "lo", "hi", "want"),
    [
        (0, 0, 60, 0.0),
        (60, 0, 60, 60.0),
        (2.5, 0, 60, 2.5),
        (-7, -math.inf, math.inf, -7.0),
        (1e300, -math.inf, math.inf, 1e300),
        (np.float64(0.25), 0, 1, 0.25),  # a float subclass
        (2**62, 0, math.inf, float(2**62)),
    ],
)
def test_accepts_real_numbers_in_range_as_float(v: Any, lo: float, hi: float, want: float) -> None:
    got = number(v, lo, hi)
    assert got == want and type(got) is float


@pytest.mark.parametrize("v", [True, False, "1", None, [1], b"1", 1j, np.int64(3)])
def test_refuses_what_is_not_a_number(v: Any) -> None:
    with pytest.raises(NumberError) as e:
        number(v, 0, 60)
    assert e.value.kind == "type"
    assert str(e.value) == f"must be a number in [0, 60], got {v!r}"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("v", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("lo", "hi"), [(-math.inf, math.inf), (0, 60), (-math.inf, 0)])
def test_refuses_nan_and_infinity_whatever_the_range(v: float, lo: float, hi: float) -> None:
    with pytest.raises(NumberError) as e:
        number(v, lo, hi)
    assert e.value.kind == "finite"
    assert str(e.value) == f"must be a finite number, got {v!r}"


@pytest.mark.parametrize(
    ("v", "lo", "hi", "message"),
    [
        (-1, 0, 60, "must be a number in [0, 60], got -1"),
        (60.000001, 0, 60, "must be a number in [0, 60], got 60.000001"),
        (0.05, 0.1, 120, "must be a number in [0.1, 120], got 0.05"),
        (-0.5, 0, math.inf, "must be a number >= 0, got -0.5"),
        (3, -math.inf, 2, "must be a number <= 2, got 3"),
        (2**64 + 1, 0, 2**64, f"must be a number in [0, {2**64:g}], got {2**64 + 1}"),
    ],
)
def test_bounds_are_inclusive_and_named(v: Any, lo: float, hi: float, message: str) -> None:
    with pytest.raises(NumberError) as e:
        number(v, lo, hi)
    assert e.value.kind == "range" and str(e.value) == message


def test_an_int_beyond_floats_range_is_refused_not_overflowed() -> None:
    with pytest.raises(NumberError) as e:
        number(10**400)
    assert e.value.kind == "range" and "integer of 1329 bits" in str(e.value)


def test_integer_mode_refuses_every_float() -> None:
    assert number(3, 1, 10, integer=True) == 3.0
    for v in (2.0, 2.5, True):
        with pytest.raises(NumberError) as e:
            number(v, 1, 10, integer=True)
        assert e.value.kind == "type"
        assert str(e.value) == f"must be a whole number in [1, 10], got {v!r}"
    with pytest.raises(NumberError, match=r"^must be a whole number in \[1, 10\], got 11$"):
        number(11, 1, 10, integer=True)


def test_positive_excludes_zero() -> None:
    assert number(1e-9, positive=True) == 1e-9
    for v in (0, 0.0, -3):
        with pytest.raises(NumberError) as e:
            number(v, positive=True)
        assert e.value.kind == "range" and str(e.value) == f"must be a positive number, got {v!r}"
    with pytest.raises(NumberError, match=r"^must be a positive whole number, got 2\.5$"):
        number(2.5, positive=True, integer=True)
    with pytest.raises(NumberError, match=r"^must be a finite number, got inf$"):
        number(math.inf, positive=True)


def test_requirement_wording() -> None:
    assert requirement() == "a finite number"
    assert requirement(integer=True) == "a finite whole number"
    assert requirement(0, 1e6) == "a number in [0, 1e+06]"
    assert requirement(positive=True, integer=True) == "a positive whole number"


def test_an_empty_range_is_a_programming_error() -> None:
    for lo, hi in ((2, 1), (math.nan, 1), (0, math.nan)):
        with pytest.raises(ValueError, match="empty range") as e:
            number(1, lo, hi)
        assert not isinstance(e.value, NumberError)


# --------------------------------------------------------------------------- the five callers


def test_engine_config_names_the_field() -> None:
    from smartcity.engine.process import EngineConfigError, _number

    assert _number("max_batch", 8, 1, 256) == 8.0
    with pytest.raises(
        EngineConfigError, match=r"^max_batch: must be a number in \[1, 256\], got True$"
    ):
        _number("max_batch", True, 1, 256)
    with pytest.raises(EngineConfigError, match=r"^analyze_fps: must be a finite number, got nan$"):
        _number("analyze_fps", math.nan, 0, 1000)


def test_incidents_config_names_the_field() -> None:
    from smartcity.incidents.config import IncidentsConfigError, _num

    assert _num(5, "evidence.pre_s", 0, 60) == 5.0
    with pytest.raises(
        IncidentsConfigError, match=r"^evidence\.pre_s: must be a number in \[0, 60\], got 61$"
    ):
        _num(61, "evidence.pre_s", 0, 60)


def test_geometry_names_the_field() -> None:
    from smartcity.incidents.geometry import GeometryError, _num

    assert _num(-1e9, "x") == -1e9  # unbounded by default
    with pytest.raises(GeometryError) as e:
        _num(math.inf, "cameras.c.lanes[0].direction[0]")
    assert e.value.field == "cameras.c.lanes[0].direction[0]"
    assert e.value.message == "must be a finite number, got inf"
    with pytest.raises(GeometryError, match=r"latitude: must be a number in \[-90, 90\], got 91"):
        _num(91, "cameras.c.location.latitude", -90.0, 90.0)


def test_supervisor_keeps_its_documented_wording(tmp_path: Path) -> None:
    from smartcity.supervisor import ApplianceConfigError, _number

    assert _number(3, "restart.crash_loop.restarts", integer=True) == 3.0
    cases = [
        (0, False, "restart.max_s: must be a positive number, got 0"),  # docs/operations.md
        (2.5, True, "restart.crash_loop.restarts: must be a positive whole number, got 2.5"),
        (math.nan, False, "restart.max_s: must be a finite number, got nan"),
        (1e9, False, "restart.max_s: 1000000000.0 is too large"),
    ]
    for v, integer, message in cases:
        where = message.split(":")[0]
        with pytest.raises(ApplianceConfigError) as e:
            _number(v, where, integer=integer)
        assert str(e.value) == message


def test_evidence_requests_keep_the_protocols_wording() -> None:
    from smartcity.bus.evidence import RequestError, check_request

    base = {"v": 1, "id": 1, "op": "clip", "cam": "gate-1"}
    assert check_request({**base, "t0": 1, "t1": 2.5}).t1 == 2.5
    for t0, problem in (
        ("a", "expected a number, got str"),
        (True, "expected a number, got bool"),
        (math.nan, "not finite"),
        (-math.inf, "not finite"),
    ):
        with pytest.raises(RequestError) as e:
            check_request({**base, "t0": t0, "t1": 2})
        assert (e.value.field, e.value.problem) == ("t0", problem)
