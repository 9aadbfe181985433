"""Builders shared by the policy tests: bundles on disk and crafted tarballs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "python" / "vedette" / "examples"

ALLOW_ECHO = """package vedette

default decision := {"allow": false, "reason": "denied by default"}

decision := {"allow": true, "reason": "echo is harmless"} if input.tool == "echo"
"""


def write_bundle(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (path -> text or bytes) under ``root`` and return it."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def tarball(entries: list[tarfile.TarInfo | tuple[str, bytes]], *, compress: bool = True) -> bytes:
    """A .tar.gz holding ``entries``: (name, bytes) for regular files, or TarInfo as given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    if not compress:
        return raw.getvalue()
    import gzip

    return gzip.compress(raw.getvalue(), mtime=0)


def example_input(tool: str, args: dict | None = None, claims: dict | None = None) -> dict:
    """An input document for the example policy, as the runtime builds it."""
    return {
        "tool": tool,
        "args": args or {},
        "claims": claims or {},
        "agent": {
            "name": "example-assistant",
            "behavioral_fingerprint": "blake3:" + "0" * 64,
            "tools": ["echo", "fs.read"],
        },
        "caller": {"id": "tests"},
        "node": {"id": "tests"},
        "time": "2026-01-01T00:00:00Z",
    }


def dumps(value: object) -> str:
    return json.dumps(value, indent=2)
