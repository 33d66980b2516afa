"""Cameras. The stream URL is write-only: answers carry it with any user name and password
removed (`url_redacted`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

CameraId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class Camera(msgspec.Struct):
    id: str
    name: str
    url_redacted: str
    enabled: bool
    geometry: dict[str, Any]
    created_at: str
    updated_at: str


class CameraCreate(msgspec.Struct, forbid_unknown_fields=True):
    id: CameraId
    name: Name
    url: Url
    enabled: bool = True
    geometry: dict[str, Any] = msgspec.field(default_factory=dict)


class CameraUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    url: Url | None = None
    enabled: bool | None = None
    geometry: dict[str, Any] | None = None
