"""The native HTTP API (/v1) and the probes."""

from jobdock.api.app import create_api

__all__ = ["create_api"]
