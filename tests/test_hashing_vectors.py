"""Known-answer tests: official BLAKE3 vectors and NIST SHA-256 examples."""

import pytest
from conftest import pattern

from vedette.hashing import Hasher, blake3, hash_file, sha256

NIST_SHA256 = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def test_blake3_official_vectors(blake3_vectors):
    assert len(blake3_vectors) >= 20
    for case in blake3_vectors:
        data = pattern(case["input_len"])
        assert blake3(data).hex() == case["hash"], case["input_len"]
        hasher = Hasher("blake3")
        for start in range(0, len(data), 1000):
            hasher.update(data[start : start + 1000])
        assert hasher.digest().hex() == case["hash"], case["input_len"]


@pytest.mark.parametrize(("message", "expected"), NIST_SHA256, ids=range(len(NIST_SHA256)))
def test_sha256_nist_vectors(message, expected, tmp_path):
    assert sha256(message).hex() == expected
    assert Hasher("sha256", message).digest().hex() == expected
    path = tmp_path / "message"
    path.write_bytes(message)
    assert hash_file(path, "sha256").hex() == expected


def test_blake3_vectors_through_files(blake3_vectors, tmp_path):
    for case in blake3_vectors:
        path = tmp_path / f"input-{case['input_len']}"
        path.write_bytes(pattern(case["input_len"]))
        assert hash_file(path).hex() == case["hash"]
