"""Errors the store raises. Each message names what is wrong (camera, incident, field, value)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by smartcity.store."""


class InvalidInputError(StoreError, ValueError):
    """A value the store refuses: bad state or severity name, geometry that is not JSON ..."""


class NotFoundError(StoreError, LookupError):
    """A row that does not exist."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class UnknownCameraError(NotFoundError):
    """No camera with that id."""


class UnknownIncidentError(NotFoundError):
    """No incident with that id."""


class ConflictError(StoreError):
    """The change conflicts with what is stored (a camera that still has incidents ...)."""


class DuplicateError(ConflictError):
    """A row with that key exists already (camera id, open incident key, evidence path)."""


class InvalidTransitionError(ConflictError):
    """An incident lifecycle change that its state does not allow (resolving a dismissed one)."""


class EvidenceExistsError(DuplicateError):
    """Evidence is never overwritten: the path has a row already, or the file exists."""
