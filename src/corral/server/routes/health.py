"""``GET /v1/health``: is this server up, which store does it use. No token needed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from corral.server.deps import ServiceDep
from corral.server.models import Health
from corral.server.routes import errors

router = APIRouter(tags=["health"])

try:
    VERSION = version("corral")
except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
    VERSION = "0"


@router.get("/v1/health", response_model=Health, responses=errors())
def health(service: ServiceDep) -> Health:
    return Health(status="ok", store=service.store_kind, version=VERSION)  # type: ignore[arg-type]
