"""The HTTP API."""

from backburner.api.app import create_app

__all__ = ["create_app"]
