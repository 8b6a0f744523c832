"""The HTTP service (FastAPI): ``create_app`` builds it, ``safeview serve`` runs it with uvicorn."""

from safeview.service.app import Settings, create_app

__all__ = ["Settings", "create_app"]
