import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def pattern(length: int) -> bytes:
    """The input of the official BLAKE3 test vectors: bytes 0..250 repeating."""
    return bytes(i % 251 for i in range(length))


@pytest.fixture(scope="session")
def blake3_vectors() -> list[dict]:
    return json.loads((DATA / "blake3_vectors.json").read_text())["cases"]


# The real OCI registry of the release tests (session-scoped).
from registry_server import auth_registry, registry, tls_registry  # noqa: E402, F401
