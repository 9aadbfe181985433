"""Errors are mapped once (docs/architecture.md, "Errors"): every Python exception
the Rust core raises is built in ``rust/bindings/errors.rs``, so each binding
converts with ``?`` and one file says which core error becomes which exception."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vedette import policy
from vedette.hashing import Digest

BINDINGS = Path(__file__).resolve().parent.parent / "rust" / "bindings"
ERRORS_FILE = BINDINGS / "errors.rs"
BUILDS_AN_EXCEPTION = re.compile(r"\bPy[A-Za-z]*(Error|Exception)::new_err\b|\bnew_err\(")


def test_only_errors_rs_builds_python_exceptions() -> None:
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(BINDINGS.glob("*.rs"))
        if path != ERRORS_FILE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if BUILDS_AN_EXCEPTION.search(line)
    ]
    assert offenders == []


def test_errors_rs_is_where_exceptions_are_built() -> None:
    # The scan above would pass vacuously if the pattern matched nothing anywhere.
    assert BUILDS_AN_EXCEPTION.search(ERRORS_FILE.read_text())


def test_a_missing_bundle_is_a_file_not_found_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bundle"
    with pytest.raises(FileNotFoundError) as raised:
        policy.Bundle.load(missing)
    assert raised.value.filename == str(missing)
    assert "os error" not in str(raised.value)


def test_argument_errors_keep_their_python_types() -> None:
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        Digest("md5", b"\0" * 16)
    with pytest.raises(TypeError, match=r"Digest\.parse\(\) takes a str"):
        Digest.parse(b"sha256:00")  # type: ignore[arg-type]
