"""Durable file writes: the one way vedette puts a file on disk.

A file is written, ``fsync``ed, and its directory ``fsync``ed, so a write
reported done survives a power cut. Replacing an existing file goes through a
temporary name beside it and one rename, so a reader (or a crash) sees the
old file or the new one, whole, never a torn mix. ``exclusive`` writes create
the file itself with ``O_EXCL`` and fail if it exists. Files are created with
exactly ``mode`` whatever the umask, and no symlink is ever followed.
``mode=None`` leaves permissions to the file system (removable media such as
FAT keep none). ``sync_directory=False`` lets a caller that writes many files
in one folder sync the folder once at the end (:func:`fsync_dir`).

:func:`read_bounded` is the matching read of a small file someone else may
have written (a key, a certificate, a revocation list): never more than its
limit is read, so a planted huge file costs nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_durably(
    path: Path,
    data: bytes | memoryview,
    mode: int | None = 0o600,
    *,
    exclusive: bool = False,
    sync_directory: bool = True,
) -> None:
    """Put ``data`` at ``path`` durably (see the module's doc)."""
    target = path if exclusive else path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600 if mode is None else mode)
    try:
        if mode is not None:
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
    if not exclusive:
        try:
            os.replace(target, path)
        except BaseException:
            os.unlink(target)
            raise
    if sync_directory:
        fsync_dir(path.parent)


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path``; :class:`FileTooLarge` (an ``OSError``) beyond
    ``limit`` bytes, which are the most ever read."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"larger than {limit} bytes")
    return data


class FileTooLarge(OSError):
    """A file over the limit :func:`read_bounded` was given."""


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (creations, renames) durable."""
    fd = os.open(directory if str(directory) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
