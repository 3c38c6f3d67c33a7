"""The HTTP API: routes, auth, problem+json, live events. `backburner.runtime.create_app`
builds the application that serves it."""

from backburner.api.app import mount_api

__all__ = ["mount_api"]
