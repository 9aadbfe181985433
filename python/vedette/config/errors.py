"""The one configuration error."""

from __future__ import annotations

from vedette.errors import VedetteError


class ConfigError(VedetteError, ValueError):
    """The configuration is invalid; the message names the key."""
