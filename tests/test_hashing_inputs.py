"""Inputs to hashing: buffers, files, errors, and the GIL being released."""

import array
import hashlib
import mmap
import sys
import threading

import blake3 as blake3_reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vedette.hashing import MAX_FILE_HASH_THREADS, Hasher, blake3, hash_file, sha256

# Lengths on each side of BLAKE3's 64-byte block and 1 KiB chunk, the 4 KiB
# GIL threshold, the 64 KiB read/mmap threshold and the 1 MiB threading threshold.
BOUNDARIES = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 4095, 4096, 4097, 65535, 65536, 65537]
BOUNDARY_LENGTHS = st.sampled_from(BOUNDARIES) | st.integers(0, 20_000)


def reference(algorithm: str, data: bytes) -> str:
    if algorithm == "blake3":
        return blake3_reference.blake3(data).hexdigest()
    return hashlib.sha256(data).hexdigest()


def one_shot(algorithm: str, data: object):
    return blake3(data) if algorithm == "blake3" else sha256(data)


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_every_buffer_kind_hashes_its_bytes(algorithm):
    data = bytes(range(256)) * 40
    expected = reference(algorithm, data)
    with mmap.mmap(-1, len(data)) as mapped:
        mapped.write(data)
        for buffer in (
            data,
            bytearray(data),
            memoryview(data),
            memoryview(b"xx" + data)[2:],
            array.array("B", data),
            mapped,
        ):
            assert one_shot(algorithm, buffer).hex() == expected, type(buffer)
            assert Hasher(algorithm, buffer).digest().hex() == expected, type(buffer)


def test_non_buffers_are_refused_clearly():
    with pytest.raises(TypeError, match="encoded before hashing"):
        blake3("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes-like object, got int"):
        sha256(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes-like object, got memoryview"):
        blake3(memoryview(b"abcdef")[::2])  # not contiguous
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        Hasher("md5")


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(["blake3", "sha256"]),
    length=BOUNDARY_LENGTHS,
    cuts=st.lists(st.integers(0, 70_000), max_size=6),
    seed=st.binary(min_size=1, max_size=64),
)
def test_incremental_one_shot_and_reference_agree(algorithm, length, cuts, seed):
    data = (seed * (length // len(seed) + 1))[:length]
    expected = reference(algorithm, data)
    assert one_shot(algorithm, data).hex() == expected
    hasher = Hasher(algorithm)
    start = 0
    for cut in sorted(c % (length + 1) for c in cuts):
        hasher.update(data[start:cut])
        start = cut
    forked = hasher.copy()
    hasher.update(data[start:])
    forked.update(data[start:])
    assert hasher.digest().hex() == expected
    assert forked.digest().hex() == expected
    assert hasher.digest() == hasher.digest(), "digest() does not consume the state"


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(["blake3", "sha256"]),
    length=st.sampled_from([*BOUNDARIES, 1 << 20, (1 << 20) + 1, 3_000_017]),
    threads=st.sampled_from([None, 1, 2, 3, 1000]),
    fill=st.integers(0, 255),
)
def test_file_hash_equals_one_shot(tmp_path_factory, algorithm, length, threads, fill):
    data = bytes((fill + i * 7) & 0xFF for i in range(min(length, 4096))) * (length // 4096 + 1)
    data = data[:length]
    path = tmp_path_factory.mktemp("files") / "data"
    path.write_bytes(data)
    assert hash_file(path, algorithm, threads).hex() == reference(algorithm, data)
    assert hash_file(str(path), algorithm, threads) == one_shot(algorithm, data)


def test_file_errors_are_oserrors_naming_the_file(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as caught:
        hash_file(missing)
    assert caught.value.filename == str(missing)
    with pytest.raises(IsADirectoryError):
        hash_file(tmp_path)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        hash_file(tmp_path, threads=0)
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        hash_file(tmp_path, "sha512")
    assert MAX_FILE_HASH_THREADS >= 2


def test_large_hashes_release_the_gil(tmp_path):
    """With a long switch interval, a busy thread runs only while the GIL is given up."""
    data = bytes(64 << 20)
    path = tmp_path / "large"
    path.write_bytes(data)
    calls = [
        lambda: blake3(data),
        lambda: sha256(data),
        lambda: Hasher("sha256").update(data),
        lambda: hash_file(path, "sha256"),
    ]
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    old_interval = sys.getswitchinterval()
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        sys.setswitchinterval(5.0)
        for call in calls:
            before = counter[0]
            call()
            assert counter[0] > before, "another thread ran during the hash"
    finally:
        sys.setswitchinterval(old_interval)
        stop.set()
        spinner.join()
