"""The dashboard served at ``/ui`` (static pages over the broker's own API)."""

from execbroker.web.dashboard import router

__all__ = ["router"]
