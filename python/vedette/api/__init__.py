"""The adapter-facing HTTP API (Starlette). Routes only translate: JSON in,
runtime decision, JSON out. There is no admin operation here (INV-10)."""

from vedette.api.app import create_app

__all__ = ["create_app"]
