"""The air-gapped drain: sealed evidence handed to removable media, then freed.

A node with no network keeps its evidence until someone carries it away. A
drain copies sealed segments to a folder (a mounted USB stick, say), checks
the copy, and only then acknowledges each segment as held by
``media:<label>``, which makes it evictable under the store's ceiling exactly
as a peer's or the archive's acknowledgement does (docs/operations.md,
"Air-gapped drain"). The steps, in order:

0. the open segment is sealed, so the drain takes every record made so far;
1. each segment's bytes are read from the store (checked against their id),
   written under ``<folder>/segments/<id hex>.seg`` and ``fsync``ed;
2. the folder is ``fsync``ed and a manifest naming every segment of this
   drain is written durably (``<folder>/drain-<node>-<time>.json``);
3. every copied file is read back from the media (its cached pages dropped
   first, so the bytes come from the device) and hashed: the BLAKE3 must be
   the segment's id;
4. only then is each segment acknowledged.

A failure before step 4 acknowledges nothing; the copy can be repeated (files
already on the media with the right bytes are kept). The store is held by the
running node (one opener, INV-01), so the drain runs inside it, asked over
the operator socket (``vedette store drain``); a node that is not running is
drained by opening its store directly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vedette.durable import fsync_dir, write_durably
from vedette.errors import StoreError
from vedette.hashing import Digest, Hasher
from vedette.store import SegmentInfo, SegmentStore

MANIFEST_FORMAT = "vedette.drain/v1"
SEGMENTS_DIR = "segments"
# Files are read back in pieces of this size, so a drain's memory stays bounded.
READ_BACK_BYTES = 1 << 20


class DrainError(StoreError):
    """A drain could not be completed; nothing it had not verified was acknowledged."""


@dataclass
class DrainReport:
    label: str
    folder: str
    manifest: str | None = None
    copied: int = 0
    already_there: int = 0
    bytes: int = 0
    verified: int = 0
    acknowledged: int = 0
    segments: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def acknowledger(label: str) -> str:
    """The name a drained segment is acknowledged by: ``media:<label>``."""
    if not label or len(label) > 200 or any(c in label for c in " /\\") or not label.isprintable():
        raise DrainError(
            f"drain label {label!r}: expected 1-200 printable characters without spaces or slashes"
        )
    return f"media:{label}"


def drain(
    store: SegmentStore,
    folder: Path,
    label: str,
    *,
    include_acknowledged: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> DrainReport:
    """Copy, check and acknowledge the sealed segments (see the module's doc).

    By default only segments nobody has acknowledged yet are drained (others
    are evictable already); ``include_acknowledged`` drains every sealed one.
    ``progress(done, total)`` is called after each segment copied.
    """
    by = acknowledger(label)
    # What was recorded until now goes too: the open segment is sealed first.
    store.seal()
    chosen = [
        info
        for info in store.segments()
        if info.sealed and info.id is not None and by not in info.acked_by
        and (include_acknowledged or not info.acked_by)
    ]  # fmt: skip
    report = DrainReport(label=label, folder=str(folder))
    target = folder / SEGMENTS_DIR
    try:
        target.mkdir(parents=True, exist_ok=True)
        for done, info in enumerate(chosen, 1):
            _copy(store, info, target, report)
            if progress is not None:
                progress(done, len(chosen))
        fsync_dir(target)
        fsync_dir(folder)
        if chosen:
            report.manifest = _write_manifest(store, folder, label, chosen)
        for info in chosen:
            _check_copy(target, info)
            report.verified += 1
    except OSError as err:
        raise DrainError(f"drain to {folder} failed, nothing acknowledged: {err}") from err
    for info in chosen:
        store.ack(str(info.id), by)
        report.acknowledged += 1
    return report


def _copy(store: SegmentStore, info: SegmentInfo, target: Path, report: DrainReport) -> None:
    assert info.id is not None
    path = target / _file_name(info.id)
    report.segments.append(info.id)
    if path.is_file() and _hash_of(path) == info.id:
        report.already_there += 1
        return
    data = store.get_segment(info.id)
    write_durably(path, data, None, sync_directory=False)
    report.copied += 1
    report.bytes += len(data)


def _write_manifest(
    store: SegmentStore, folder: Path, label: str, chosen: Iterable[SegmentInfo]
) -> str:
    now_ms = time.time_ns() // 1_000_000
    manifest = {
        "format": MANIFEST_FORMAT,
        "node": store.node_id,
        "label": label,
        "created_unix_ms": now_ms,
        "segments": [
            {
                "id": info.id,
                "origin": info.origin,
                "seq": info.seq,
                "prev": info.prev,
                "size": info.size,
                "records": info.records,
                "first_record": info.first_record,
                "created_unix_ms": info.created_unix_ms,
                "file": f"{SEGMENTS_DIR}/{_file_name(str(info.id))}",
            }
            for info in chosen
        ],
    }
    name = f"drain-{store.node_id}-{now_ms}.json"
    write_durably(folder / name, json.dumps(manifest, indent=1).encode(), None)
    return name


def _file_name(segment_id: str) -> str:
    return f"{Digest.parse(segment_id).hex()}.seg"


def _check_copy(target: Path, info: SegmentInfo) -> None:
    path = target / _file_name(str(info.id))
    actual = _hash_of(path, from_device=True)
    if actual != info.id:
        raise DrainError(f"the copy of {info.id} on the media reads back as {actual}")


def _hash_of(path: Path, *, from_device: bool = False) -> str:
    """BLAKE3 of a file, read in pieces; ``from_device`` drops its cached pages
    first so the bytes are those the device holds."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if from_device:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        hasher = Hasher("blake3")
        while chunk := os.read(fd, READ_BACK_BYTES):
            hasher.update(chunk)
        return str(hasher.digest())
    finally:
        os.close(fd)


def import_drained(store: SegmentStore, folder: Path) -> dict[str, object]:
    """Import every segment a drain left in ``folder``, each checked by the store
    against its id, its structure and its origin's chain. Returns the counts
    and, for each refused file, why."""
    imported = 0
    refused: dict[str, str] = {}
    for path in sorted((folder / SEGMENTS_DIR).glob("*.seg")):
        try:
            store.import_segment(path.read_bytes(), f"blake3:{path.stem}")
            imported += 1
        except (StoreError, ValueError) as err:
            refused[path.name] = str(err)
    return {"imported": imported, "refused": refused}
