"""The API's features, one package each: schemas (msgspec), services (rules), controllers."""

from __future__ import annotations

from typing import Any


def route_handlers() -> list[Any]:
    from smartcity.api.domain.accounts.controllers import (
        AuditController,
        AuthController,
        KeysController,
        UsersController,
    )
    from smartcity.api.domain.cameras.controllers import CamerasController
    from smartcity.api.domain.incidents.controllers import IncidentsController
    from smartcity.api.domain.live.controllers import LiveController, live_ws
    from smartcity.api.domain.roadsafety.controllers import RoadSafetyController
    from smartcity.api.domain.system.controllers import SystemController, metrics
    from smartcity.api.domain.traffic.controllers import TrafficController
    from smartcity.api.domain.web.controllers import WebController, static_router
    from smartcity.api.domain.webhooks.controllers import WebhooksController

    return [
        AuthController,
        UsersController,
        KeysController,
        AuditController,
        CamerasController,
        IncidentsController,
        LiveController,
        live_ws,
        TrafficController,
        SystemController,
        metrics,
        WebhooksController,
        RoadSafetyController,
        WebController,
        static_router(),
    ]
