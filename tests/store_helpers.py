"""Shared helpers for the segment store tests."""

from __future__ import annotations

import os
from pathlib import Path


def du_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` as ``du`` counts them (allocated blocks, dirs included)."""
    total = os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            total += os.lstat(Path(root) / name).st_blocks * 512
    return total
