"""The runtime's configuration: one typed, validated object with embedded defaults.

Sources, later ones winning: the defaults, a TOML file (``vedette.toml``),
environment variables ``VEDETTE_<SECTION>_<KEY>`` (for example
``VEDETTE_LISTEN_PORT=9000``), and command-line flags passed as ``overrides``
(``{"listen.port": 9000}``). Every setting is declared once, in ``schema.py``
(type, bounds, default, meaning); ``load.py`` checks a configuration against
it, and docs/configuration.md's tables are generated from it
(``reference.py``). An error names the dotted key, what was expected and what
was given. Unknown keys are errors too, so a typo never silently leaves a
default in force.
"""

from __future__ import annotations

from vedette.config.errors import ConfigError
from vedette.config.load import ENV_PREFIX, load_config
from vedette.config.schema import (
    UNSIGNED_REFUSED,
    AgentConfig,
    ArchiveConfig,
    CallerConfig,
    Config,
    EvidenceConfig,
    FsMount,
    HttpToolConfig,
    IntentLimits,
    ListenConfig,
    OperatorConfig,
    PeersConfig,
    PolicyConfig,
    QuotaConfig,
    ReleasesConfig,
    StoreConfig,
    ToolLimits,
    ToolsConfig,
    default_state_dir,
)
from vedette.hashing import Digest, sha256


def token_digest(token: str) -> Digest:
    """What the config keeps of a bearer token: its SHA-256, never the token."""
    return sha256(token.encode("utf-8"))


__all__ = [
    "ENV_PREFIX",
    "UNSIGNED_REFUSED",
    "AgentConfig",
    "ArchiveConfig",
    "CallerConfig",
    "Config",
    "ConfigError",
    "EvidenceConfig",
    "FsMount",
    "HttpToolConfig",
    "IntentLimits",
    "ListenConfig",
    "OperatorConfig",
    "PeersConfig",
    "PolicyConfig",
    "QuotaConfig",
    "ReleasesConfig",
    "StoreConfig",
    "ToolLimits",
    "ToolsConfig",
    "default_state_dir",
    "load_config",
    "token_digest",
]
