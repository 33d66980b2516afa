"""The one check of a configured or received number, shared by every parser of the appliance.

``number(v, lo, hi)`` is ``float(v)`` when v is a real number: an int or a float, never a bool
(a YAML ``true`` is not 1), finite, and within [lo, hi]. Otherwise it raises NumberError, a
ValueError whose message is the standard wording without the field's name (``must be a number
in [0, 60], got 'ten'``); each caller adds the field and raises its own error class::

    try:
        return number(v, 0, 60)
    except NumberError as e:
        raise EngineConfigError(f"{where}: {e}") from None

``kind`` says which test failed (``type``, ``finite`` or ``range``) for the callers whose
wording is part of a protocol (the evidence server's ``t0: expected a number, got str``).
"""

from __future__ import annotations

import math
from typing import Literal

NumberProblem = Literal["type", "finite", "range"]


class NumberError(ValueError):
    """The value is not an acceptable number; str(e) is the standard wording, ``kind`` the test
    that failed."""

    def __init__(self, message: str, kind: NumberProblem) -> None:
        super().__init__(message)
        self.kind: NumberProblem = kind


def requirement(
    lo: float = -math.inf, hi: float = math.inf, *, integer: bool = False, positive: bool = False
) -> str:
    """What number() asks for, in words: ``a number in [0, 60]``, ``a positive whole number``,
    ``a finite number``."""
    noun = "whole number" if integer else "number"
    words = f"a positive {noun}" if positive else f"a {noun}"
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{words} in [{lo:g}, {hi:g}]"
    if math.isfinite(lo):
        return f"{words} >= {lo:g}"
    if math.isfinite(hi):
        return f"{words} <= {hi:g}"
    return words if positive else f"a finite {noun}"


def number(
    v: object,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    integer: bool = False,
    positive: bool = False,
) -> float:
    """float(v) if v is an int or float (not a bool), finite and lo <= v <= hi; NumberError
    otherwise. integer=True refuses every float, 2.0 included;
    positive=True also requires v > 0."""
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"number(): empty range [{lo}, {hi}]")
    want = requirement(lo, hi, integer=integer, positive=positive)
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and isinstance(v, float)):
        raise NumberError(f"must be {want}, got {v!r}", "type")
    if isinstance(v, float) and not math.isfinite(v):
        raise NumberError(f"must be a finite number, got {v!r}", "finite")
    if not lo <= v <= hi or (positive and not v > 0):
        raise NumberError(f"must be {want}, got {v!r}", "range")
    try:
        return float(v)
    except OverflowError:  # an int beyond a float's range (only where the range is open)
        assert isinstance(v, int)
        raise NumberError(
            f"must be {want}, got an integer of {v.bit_length()} bits", "range"
        ) from None
