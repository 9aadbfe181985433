"""Built-in tools: ``echo``, and ``fs.read`` / ``fs.list`` confined to configured mounts.

Agents name files by mount paths (``/data/a.csv`` for a folder mounted at
``/data``) and never see host paths. Confinement does not trust path strings:
the path is split into components, ``..``, ``.`` and empty components are
refused, and the file is reached by opening one component at a time from the
mounted folder's directory handle with ``O_NOFOLLOW``, so a symlink anywhere
on the way is refused, even one swapped in while the call runs. A regular
file with more than one hard link is not read: a link made inside a mount to
a file outside it would otherwise reach past the mount (docs/configuration.md,
"Tools").
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from vedette.config import FsMount, ToolsConfig
from vedette.runtime.tools.base import Tool, ToolFailed

MAX_LIST_ENTRIES = 10_000


class Echo:
    """Returns its arguments unchanged."""

    name = "echo"
    blocking = False

    def run(self, args: dict[str, Any]) -> Any:
        return args


class ConfinedFiles:
    """Opens paths only beneath the configured mounts, component by component."""

    def __init__(self, mounts: tuple[FsMount, ...]) -> None:
        self._mounts: list[tuple[PurePosixPath, Path]] = []
        for mount in mounts:
            at = PurePosixPath(mount.at)
            if not at.is_absolute() or any(part in ("..", ".") for part in mount.at.split("/")[1:]):
                raise ValueError(
                    f"tools.fs_mounts: 'at' must be a clean absolute path, got {mount.at!r}"
                )
            self._mounts.append((at, Path(os.path.realpath(mount.dir))))
        # Longest mount path first, so /data/raw wins over /data.
        self._mounts.sort(key=lambda item: len(item[0].parts), reverse=True)

    def open(self, path_text: object, *, directory: bool) -> tuple[int, str]:
        if not isinstance(path_text, str) or not path_text:
            raise ToolFailed("error", "path must be a non-empty string")
        if "\x00" in path_text:
            raise ToolFailed("error", "path contains a NUL character")
        path = PurePosixPath(path_text)
        if not path.is_absolute():
            raise ToolFailed("error", f"path {path_text!r} must be absolute")
        if any(part in ("", "..", ".") for part in path_text.split("/")[1:]):
            raise ToolFailed("error", f"path {path_text!r} has an empty, '.' or '..' component")
        for at, folder in self._mounts:
            try:
                relative = path.relative_to(at)
            except ValueError:
                continue
            return self._walk(at, folder, relative.parts, directory=directory), path_text
        raise ToolFailed("error", f"path {path_text!r} is outside the mounted folders")

    def _walk(
        self, at: PurePosixPath, root: Path, parts: tuple[str, ...], *, directory: bool
    ) -> int:
        base = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(root, base | os.O_DIRECTORY)
        except OSError as err:  # the host folder is not there: name the mount, not the folder
            raise ToolFailed("error", f"mount {str(at)!r} is unavailable ({err.strerror})") from err
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                flags = base | (os.O_DIRECTORY if directory or not last else 0)
                try:
                    next_fd = os.open(part, flags, dir_fd=fd)
                except OSError as err:
                    raise _refusal(err, part, fd) from err
                os.close(fd)
                fd = next_fd
            return fd
        except BaseException:
            os.close(fd)
            raise


def _refusal(err: OSError, part: str, dir_fd: int) -> ToolFailed:
    link = ToolFailed("error", f"{part!r} is a symbolic link; links are not followed")
    if err.errno in (errno.ELOOP, errno.EMLINK):
        return link
    # O_DIRECTORY | O_NOFOLLOW on a link reports ENOTDIR on Linux: say which it was.
    try:
        if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return link
    except OSError:
        pass
    if err.errno == errno.ENOTDIR:
        return ToolFailed("error", f"{part!r} is not a directory")
    return ToolFailed("error", f"{part!r}: {err.strerror}")


class FsRead:
    """``{"path": "/abs/path"}`` → ``{"path", "size", "encoding", "content"}``."""

    name = "fs.read"

    def __init__(self, files: ConfinedFiles, max_bytes: int) -> None:
        self._files = files
        self._max_bytes = max_bytes

    def run(self, args: dict[str, Any]) -> Any:
        fd, path = self._files.open(args.get("path"), directory=False)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ToolFailed("error", f"{path!r} is not a regular file")
            if info.st_nlink > 1:
                # Another name of the same file may lie outside the mount; which
                # one was meant cannot be told, so none is read.
                raise ToolFailed(
                    "error", f"{path!r} has {info.st_nlink} hard links; linked files are not read"
                )
            if info.st_size > self._max_bytes:
                raise ToolFailed(
                    "error",
                    f"{path!r} is {info.st_size} bytes, over the {self._max_bytes}-byte limit",
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(self._max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > self._max_bytes:
            raise ToolFailed("error", f"{path!r} grew past the {self._max_bytes}-byte limit")
        try:
            return {"path": path, "size": len(data), "encoding": "utf-8", "content": data.decode()}
        except UnicodeDecodeError:
            content = base64.b64encode(data).decode()
            return {"path": path, "size": len(data), "encoding": "base64", "content": content}


class FsList:
    """``{"path": "/abs/dir"}`` → ``{"path", "entries": [{"name", "type", "size"}]}``."""

    name = "fs.list"

    def __init__(self, files: ConfinedFiles) -> None:
        self._files = files

    def run(self, args: dict[str, Any]) -> Any:
        fd, path = self._files.open(args.get("path"), directory=True)
        entries: list[dict[str, Any]] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    if len(entries) >= MAX_LIST_ENTRIES:
                        raise ToolFailed("error", f"{path!r} has over {MAX_LIST_ENTRIES} entries")
                    info = entry.stat(follow_symlinks=False)
                    entries.append(
                        {"name": entry.name, "type": _kind(info.st_mode), "size": info.st_size}
                    )
        finally:
            os.close(fd)
        entries.sort(key=lambda item: str(item["name"]))
        return {"path": path, "entries": entries}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def builtin_tools(config: ToolsConfig) -> list[Tool]:
    files = ConfinedFiles(config.fs_mounts)
    return [Echo(), FsRead(files, config.fs_max_read_bytes), FsList(files)]
