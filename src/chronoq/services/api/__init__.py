"""The api role: the HTTP interface (seed-compatible routes and ``/v1``)."""

from chronoq.services.api.app import create_app, create_metrics_app
from chronoq.services.api.deps import ApiDeps

__all__ = ["ApiDeps", "create_app", "create_metrics_app"]
