"""Writing key, certificate and CRL files without races or loose permissions."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_new_file(path: Path, data: bytes, mode: int, *, replace: bool = False) -> None:
    """Write ``data`` to ``path``, created with exactly ``mode``; never follows a symlink.

    Without ``replace`` an existing ``path`` (even a dangling symlink) raises
    ``FileExistsError`` (O_EXCL). With it the bytes go to a fresh file beside
    ``path`` that then replaces it in one rename, so a reader sees the old or
    the new file, never a half-written one, and never inherits the old mode.
    """
    target = path if not replace else path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must neither loosen nor tighten it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
    if replace:
        try:
            os.replace(target, path)
        except BaseException:
            os.unlink(target)
            raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory if str(directory) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
