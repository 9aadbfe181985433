"""vedette: a fail-closed policy runtime for AI-agent tool calls.

The Rust core lives in ``vedette._core``; the modules here give it its Python
shape. Importing ``vedette`` loads only the core and the error classes, so it
stays cheap for short-lived commands.
"""

from vedette._core import __version__
from vedette.errors import VedetteError

__all__ = ["VedetteError", "__version__"]
