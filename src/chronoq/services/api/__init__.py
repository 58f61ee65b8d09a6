"""The api role: the HTTP interface (seed-compatible routes and ``/v1``)."""

from chronoq.services.api.app import ApiDeps, create_app

__all__ = ["ApiDeps", "create_app"]
