"""Bundle rules: reading, limits, path forms, roots, manifests, the policy hash."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from policy_helpers import ALLOW_ECHO, EXAMPLES, tarball, write_bundle

from vedette.errors import BundleError, PolicyError, VedetteError
from vedette.hashing import HashRole, require_role
from vedette.policy import Bundle, BundleLimits, PolicyEngine


def refused(data: bytes, limits: BundleLimits | None = None) -> BundleError:
    with pytest.raises(BundleError) as caught:
        Bundle.from_bytes(data, limits)
    return caught.value


def test_directory_and_tarball_of_the_same_files_have_one_hash(tmp_path):
    root = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO, "x/data.json": '{"a": 1}'})
    from_dir = Bundle.load(root)
    packed = from_dir.to_tar_gz()
    assert Bundle.from_bytes(packed).policy_hash == from_dir.policy_hash
    (tmp_path / "b.tar.gz").write_bytes(packed)
    assert Bundle.load(tmp_path / "b.tar.gz").policy_hash == from_dir.policy_hash
    assert from_dir.files == ["p.rego", "x/data.json"]


def test_policy_hash_has_the_policy_hash_role(tmp_path):
    bundle = Bundle.load(write_bundle(tmp_path, {"p.rego": ALLOW_ECHO}))
    assert bundle.policy_hash.algorithm == "sha256"
    assert require_role(bundle.policy_hash, HashRole.POLICY_HASH) == bundle.policy_hash


def test_opa_style_tarball_with_leading_slashes_matches_plain_paths():
    opa_style = tarball([("/.manifest", b'{"revision": "1"}'), ("/p.rego", ALLOW_ECHO.encode())])
    plain = tarball([("p.rego", ALLOW_ECHO.encode()), (".manifest", b'{"revision":"1"}')])
    assert Bundle.from_bytes(opa_style).policy_hash == Bundle.from_bytes(plain).policy_hash


def test_hash_ignores_json_whitespace_and_key_order(tmp_path):
    a = write_bundle(
        tmp_path / "a",
        {"p.rego": ALLOW_ECHO, "d/data.json": '{"x": [1, 2], "y": {"b": 1, "a": 2}}'},
    )
    b = write_bundle(
        tmp_path / "b",
        {"p.rego": ALLOW_ECHO, "d/data.json": '{\n "y": {"a": 2,\n"b": 1},\n"x":[1,2]}\n'},
    )
    c = write_bundle(
        tmp_path / "c", {"p.rego": ALLOW_ECHO, "d/data.yaml": "x: [1, 2]\ny:\n  b: 1\n  a: 2\n"}
    )
    d = write_bundle(
        tmp_path / "d", {"p.rego": ALLOW_ECHO, "d/data.yaml": "y: {a: 2, b: 1}\nx:\n- 1\n- 2\n"}
    )
    assert Bundle.load(a).policy_hash == Bundle.load(b).policy_hash
    assert Bundle.load(c).policy_hash == Bundle.load(d).policy_hash


@pytest.mark.parametrize(
    "change",
    [
        {"d/data.json": '{"x": [1, 3]}'},
        {"d/data.json": '{"x": [2, 1]}'},
        {"e/data.json": '{"x": [1, 2]}', "d/data.json": None},
        {"p.rego": ALLOW_ECHO + "\n"},
        {"q.rego": "package vedette.extra\nx := 1\n"},
        {".manifest": '{"revision": "2"}'},
    ],
)
def test_any_real_change_changes_the_hash(tmp_path, change):
    base = {"p.rego": ALLOW_ECHO, "d/data.json": '{"x": [1, 2]}', ".manifest": '{"revision": "1"}'}
    changed = {**base, **change}
    changed = {k: v for k, v in changed.items() if v is not None}
    original = Bundle.load(write_bundle(tmp_path / "a", base)).policy_hash
    assert Bundle.load(write_bundle(tmp_path / "b", changed)).policy_hash != original


def test_build_is_reproducible_byte_for_byte(tmp_path):
    root = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO, "d/data.json": "{}"})
    first = Bundle.load(root).to_tar_gz()
    os.utime(root / "p.rego", (1, 1))
    (root / "d" / "data.json").chmod(0o600)
    assert Bundle.load(root).to_tar_gz() == first


def test_path_traversal_entry_is_refused():
    err = refused(tarball([("p.rego", ALLOW_ECHO.encode()), ("../../etc/cron.d/x.rego", b"")]))
    assert err.rule == "path-form"
    assert err.file == "../../etc/cron.d/x.rego"
    assert "'..'" in str(err)


@pytest.mark.parametrize("name", ["a//b.rego", "a/./b.rego", "a\\b.rego", "//abs/p.rego"])
def test_malformed_paths_are_refused(name):
    assert refused(tarball([(name, b"")])).rule == "path-form"


@pytest.mark.parametrize(
    ("kind", "link"),
    [
        (tarfile.SYMTYPE, "/etc/passwd"),
        (tarfile.LNKTYPE, "p.rego"),
        (tarfile.CHRTYPE, ""),
        (tarfile.FIFOTYPE, ""),
    ],
)
def test_links_and_devices_are_refused(kind, link):
    info = tarfile.TarInfo("data.json")
    info.type = kind
    info.linkname = link
    err = refused(tarball([("p.rego", ALLOW_ECHO.encode()), info]))
    assert err.rule == "entry-type"
    assert err.file == "data.json"


def test_symlink_in_directory_bundle_is_refused(tmp_path):
    root = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO})
    (root / "data.json").symlink_to("/etc/hostname")
    with pytest.raises(BundleError) as caught:
        Bundle.load(root)
    assert caught.value.rule == "entry-type"
    assert caught.value.file == "data.json"


def test_corrupt_tarball_is_refused():
    packed = bytearray(tarball([("p.rego", ALLOW_ECHO.encode() * 20)]))
    packed[len(packed) // 2] ^= 0xFF
    err = refused(bytes(packed))
    assert err.rule == "unreadable"
    assert refused(b"\x1f\x8b" + b"\x00" * 30).rule == "unreadable"
    assert refused(tarball([("p.rego", b"x")], compress=False)).rule == "unreadable"


def test_zip_bomb_is_refused_without_inflating_it():
    bomb = tarball([("data.json", b" " * (8 << 20))])
    assert len(bomb) < 64 << 10
    err = refused(bomb, BundleLimits(max_decompressed_bytes=1 << 20))
    assert err.rule == "size-limit"
    assert "decompress" in str(err) or "bound" in str(err)


def test_compressed_size_entry_count_and_file_size_limits():
    packed = tarball([("a.rego", b"#" * 4000), ("b.rego", b"#"), ("c.rego", b"#")])
    assert refused(packed, BundleLimits(max_compressed_bytes=10)).rule == "size-limit"
    assert refused(packed, BundleLimits(max_entries=2)).rule == "entry-limit"
    err = refused(packed, BundleLimits(max_file_bytes=1000))
    assert (err.rule, err.file) == ("size-limit", "a.rego")


def test_duplicate_entries_are_refused():
    packed = tarball([("p.rego", ALLOW_ECHO.encode()), ("./p.rego", ALLOW_ECHO.encode())])
    assert refused(packed).rule == "duplicate-path"


def test_roots_are_honoured_for_data_and_packages(tmp_path):
    manifest = json.dumps({"roots": ["vedette"]})
    write_bundle(
        tmp_path / "ok", {".manifest": manifest, "p.rego": ALLOW_ECHO, "vedette/data.json": "{}"}
    )
    PolicyEngine(Bundle.load(tmp_path / "ok"))
    write_bundle(
        tmp_path / "data", {".manifest": manifest, "p.rego": ALLOW_ECHO, "other/data.json": "{}"}
    )
    with pytest.raises(BundleError) as caught:
        Bundle.load(tmp_path / "data")
    assert (caught.value.rule, caught.value.file) == ("roots", "other/data.json")
    write_bundle(
        tmp_path / "pkg",
        {".manifest": manifest, "p.rego": ALLOW_ECHO, "q.rego": "package other\nx := 1\n"},
    )
    with pytest.raises(BundleError) as caught:
        PolicyEngine(Bundle.load(tmp_path / "pkg"))
    assert (caught.value.rule, caught.value.file) == ("roots", "q.rego")


@pytest.mark.parametrize(
    "manifest",
    ['{"rego_version": 3}', '{"roots": ["a", "a/b"]}', '{"revison": "typo"}', "[]", "{"],
)
def test_bad_manifest_is_refused_naming_the_file(tmp_path, manifest):
    write_bundle(tmp_path, {".manifest": manifest, "p.rego": ALLOW_ECHO})
    with pytest.raises(BundleError) as caught:
        Bundle.load(tmp_path)
    assert (caught.value.rule, caught.value.file) == ("manifest", ".manifest")
    assert '".manifest"' in str(caught.value)


def test_manifest_fields_are_exposed(tmp_path):
    manifest = {"revision": "r7", "roots": ["vedette"], "rego_version": 1, "metadata": {"k": [1]}}
    write_bundle(tmp_path, {".manifest": json.dumps(manifest), "vedette/p.rego": ALLOW_ECHO})
    bundle = Bundle.load(tmp_path)
    assert (bundle.revision, bundle.roots, bundle.rego_version) == ("r7", ["vedette"], 1)
    assert bundle.metadata == {"k": [1]}
    assert bundle.canonical_listing().startswith("vedette-policy-listing/v1\n")


def test_non_bundle_files_are_ignored(tmp_path):
    with_extra = write_bundle(tmp_path / "a", {"p.rego": ALLOW_ECHO, "README.md": "notes"})
    plain = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO})
    assert Bundle.load(with_extra).files == ["p.rego"]
    assert Bundle.load(with_extra).policy_hash == Bundle.load(plain).policy_hash


def test_bundle_errors_are_policy_and_value_errors():
    err = refused(b"nope")
    assert isinstance(err, PolicyError)
    assert isinstance(err, VedetteError)
    assert isinstance(err, ValueError)


def test_missing_path_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        Bundle.load(tmp_path / "absent.tar.gz")


def test_example_bundle_loads():
    bundle = Bundle.load(EXAMPLES / "bundle")
    assert bundle.revision == "example-1"
    assert bundle.files == [".manifest", "vedette/data.json", "vedette/policy.rego"]


def test_limits_have_documented_defaults():
    limits = BundleLimits()
    assert limits.max_decompressed_bytes == 128 << 20
    assert limits.max_entries == 10_000
    assert BundleLimits(max_entries=5).max_entries == 5
    assert "max_entries=5" in repr(BundleLimits(max_entries=5))


def test_tarball_built_with_tarfile_paths_dot_slash(tmp_path):
    raw = io.BytesIO()
    root = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO})
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        archive.add(root, arcname=".")
    assert Bundle.from_bytes(raw.getvalue()).policy_hash == Bundle.load(root).policy_hash
