"""The OCI client and image layouts against a real registry (docker-registry 2.8)."""

from __future__ import annotations

import json

import pytest
from release_helpers import agent_bytes, bundle_bytes, make_key, publish

from vedette.errors import OciError
from vedette.releases.artifacts import (
    AGENT_ARTIFACT,
    EMPTY_MEDIA_TYPE,
    POLICY_ARTIFACT,
    POLICY_LAYER,
    RELEASE_ARTIFACT,
    TITLE,
    ReleaseDocument,
    build_release,
    push_release,
)
from vedette.releases.layout import LayoutRepository
from vedette.releases.oci import (
    OCI_MANIFEST,
    OciDigestError,
    RegistryAuth,
    RegistryClient,
    check_digest,
    digest_of,
    is_digest,
    names_digest,
    parse_reference,
)
from vedette.releases.verify import fetch_release


@pytest.fixture
def connect():
    """RegistryClient(...).repository(name), closed after the test."""
    clients = []

    def open_(host, name, **options):
        options.setdefault("insecure", True)
        client = RegistryClient(host, **options)
        clients.append(client)
        return client.repository(name)

    yield open_
    for client in clients:
        client.close()


def test_push_and_pull_round_trip_byte_for_byte(registry, connect, tmp_path):
    repo = connect(registry.host, "vedette/roundtrip")
    built = build_release(agent_bytes(), bundle_bytes("package vedette\n\ndecision := {}\n"))
    digest = push_release(repo, built, "stable")
    assert repo.resolve("stable") == digest
    release = repo.get_manifest("stable")
    assert release.data == built.release.manifest
    assert release.digest == digest
    assert release.media_type == OCI_MANIFEST
    document = release.json()
    assert document["artifactType"] == RELEASE_ARTIFACT
    assert document["config"]["mediaType"] == EMPTY_MEDIA_TYPE
    assert document["layers"][0]["annotations"][TITLE] == "release.json"
    parsed = ReleaseDocument.from_json(repo.get_blob(document["layers"][0]["digest"]))
    assert parsed == built.document
    agent = repo.get_manifest(parsed.agent_digest)
    assert agent.json()["artifactType"] == AGENT_ARTIFACT
    assert repo.get_blob(agent.json()["layers"][0]["digest"]) == built.agent.blobs[0]
    policy = repo.get_manifest(parsed.policy_digest).json()
    assert policy["artifactType"] == POLICY_ARTIFACT
    assert policy["layers"][0]["mediaType"] == POLICY_LAYER
    assert policy["layers"][0]["annotations"][TITLE] == "bundle.tar.gz"
    assert repo.get_blob(policy["layers"][0]["digest"]) == built.policy.blobs[0]
    assert repo.get_blob(digest_of(b"{}")) == b"{}"


def test_an_unknown_tag_resolves_to_none_and_a_missing_blob_is_an_error(registry, connect):
    repo = connect(registry.host, "vedette/empty")
    assert repo.resolve("nothing-here") is None
    with pytest.raises(OciError, match="404"):
        repo.get_blob("sha256:" + "0" * 64)


def test_a_blob_over_the_limit_is_refused(registry, connect):
    repo = connect(registry.host, "vedette/limits")
    digest = repo.put_blob(b"x" * 5000)
    with pytest.raises(OciError, match="limit"):
        repo.get_blob(digest, max_bytes=4096)
    assert repo.get_blob(digest, max_bytes=5000) == b"x" * 5000


def test_https_is_the_default_and_plain_http_needs_insecure(registry, connect):
    repo = connect(registry.host, "vedette/tls", insecure=False)
    with pytest.raises(OciError, match="https://"):
        repo.resolve("stable")


def test_basic_auth_registry_needs_the_credentials(auth_registry, connect, tmp_path):
    anonymous = connect(auth_registry.host, "vedette/private")
    with pytest.raises(OciError, match="401"):
        anonymous.resolve("stable")
    wrong = connect(auth_registry.host, "vedette/private", auth=RegistryAuth("fleet", "wrong"))
    with pytest.raises(OciError, match="401"):
        wrong.put_blob(b"data")
    auth = RegistryAuth(auth_registry.username, auth_registry.password)
    repo = connect(auth_registry.host, "vedette/private", auth=auth)
    key = make_key(tmp_path / "keys")
    digest, _ = publish(repo, key, "stable")
    assert repo.resolve("stable") == digest


def test_pull_into_an_image_layout_and_read_it_back(registry, connect, tmp_path):
    repo = connect(registry.host, "vedette/airgap")
    key = make_key(tmp_path / "keys")
    digest, built = publish(repo, key, "stable")
    layout = LayoutRepository(tmp_path / "usb", create=True)
    assert fetch_release(repo, "stable", layout, tag="stable") == digest
    assert (tmp_path / "usb" / "oci-layout").is_file()
    index = json.loads((tmp_path / "usb" / "index.json").read_text())
    assert any(m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "stable"
               for m in index["manifests"])  # fmt: skip
    copy = LayoutRepository(tmp_path / "usb")
    assert copy.resolve("stable") == digest
    assert copy.get_manifest(digest).data == built.release.manifest
    assert copy.resolve(digest.replace(":", "-") + ".sig") is not None


def test_a_tampered_layout_blob_fails_its_digest(registry, connect, tmp_path):
    repo = connect(registry.host, "vedette/airgap2")
    _, built = publish(repo, None, "stable")
    layout = LayoutRepository(tmp_path / "usb", create=True)
    fetch_release(repo, "stable", layout)
    blob = built.agent.blobs[0]
    path = tmp_path / "usb" / "blobs" / "sha256" / digest_of(blob).split(":")[1]
    path.write_bytes(blob.replace(b"echo", b"ECHO"))
    with pytest.raises(OciDigestError):
        layout.get_blob(digest_of(blob))


@pytest.mark.parametrize(
    ("text", "kind", "registry_", "repository", "tag"),
    [
        ("oci://127.0.0.1:5000/vedette/recon:stable", "registry", "127.0.0.1:5000",
         "vedette/recon", "stable"),
        ("registry.example:443/a/b/c:v1.2", "registry", "registry.example:443", "a/b/c", "v1.2"),
        ("oci-layout:///media/usb/releases:stable", "layout", "", "releases", "stable"),
    ],
)  # fmt: skip
def test_references_parse(text, kind, registry_, repository, tag):
    ref = parse_reference(text)
    assert (ref.kind, ref.registry, ref.repository, ref.tag) == (kind, registry_, repository, tag)


@pytest.mark.parametrize(
    "text",
    ["oci://host:5000/repo", "oci://host/Upper:tag", "host-only:tag", "oci://h/r@sha256:12",
     "oci://h/r:bad tag"],
)  # fmt: skip
def test_bad_references_are_refused(text):
    with pytest.raises(OciError):
        parse_reference(text)


def test_the_referrers_api_is_used_when_the_registry_has_it(connect):
    """distribution 2.8 has no referrers API (the tag fallback is tested against it);
    a registry that has one answers an image index, used as it is."""
    import http.server
    import threading

    descriptor = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 10,
                  "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
    asked = []

    class Referrers(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            asked.append(self.path)
            if "/referrers/" not in self.path:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Content-Length", str(len(index)))
            self.end_headers()
            self.wfile.write(index)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Referrers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        repo = connect(f"127.0.0.1:{server.server_address[1]}", "vedette/ref")
        assert repo.referrers("sha256:" + "a" * 64) == [descriptor]
        assert asked == ["/v2/vedette/ref/referrers/sha256:" + "a" * 64]
    finally:
        server.shutdown()
        server.server_close()


def test_a_tls_registry_needs_its_ca(tls_registry, connect):
    ca = tls_registry.root / "tls" / "ca.pem"
    without = connect(tls_registry.host, "vedette/tls", insecure=False)
    with pytest.raises(OciError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        without.resolve("stable")
    repo = connect(tls_registry.host, "vedette/tls", insecure=False, ca=ca)
    built = build_release(agent_bytes(), bundle_bytes("package vedette\n\ndecision := {}\n"))
    digest = push_release(repo, built, "stable")
    assert repo.resolve("stable") == digest


class TokenRegistry:
    """A registry front that wants the bearer-token exchange, and one that hangs."""

    def __init__(self):
        import http.server
        import threading

        self.token_requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                port = self.server.server_address[1]
                if self.path.startswith("/token"):
                    outer.token_requests.append((self.path, self.headers.get("Authorization")))
                    good = "Basic " + __import__("base64").b64encode(b"fleet:pw").decode()
                    if self.headers.get("Authorization") != good:
                        return self.reply(401)
                    return self.reply(200, b'{"token": "granted-token"}')
                if self.path.startswith("/v2/slow/"):
                    import time

                    time.sleep(3)
                    return self.reply(500)
                if self.headers.get("Authorization") != "Bearer granted-token":
                    challenge = (
                        f'Bearer realm="http://127.0.0.1:{port}/token",'
                        'service="test-registry",scope="repository:vedette/tok:pull"'
                    )
                    return self.reply(401, headers=[("WWW-Authenticate", challenge)])
                return self.reply(200, b"blob-bytes")

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_registry():
    server = TokenRegistry()
    yield server
    server.close()


def test_the_bearer_token_exchange(token_registry, connect):
    digest = digest_of(b"blob-bytes")
    repo = connect(token_registry.host, "vedette/tok", auth=RegistryAuth("fleet", "pw"))
    assert repo.get_blob(digest) == b"blob-bytes"
    path, authorization = token_registry.token_requests[0]
    assert "service=test-registry" in path
    assert "scope=repository%3Avedette%2Ftok%3Apull" in path
    assert authorization.startswith("Basic ")
    assert repo.get_blob(digest) == b"blob-bytes"  # the token is reused
    assert len(token_registry.token_requests) == 1
    wrong = connect(token_registry.host, "vedette/tok", auth=RegistryAuth("fleet", "nope"))
    with pytest.raises(OciError, match=r"token request .* HTTP 401"):
        wrong.get_blob(digest)


def test_a_registry_that_does_not_answer_in_time_is_a_timeout_error(token_registry, connect):
    repo = connect(token_registry.host, "slow", timeout_s=0.5)
    with pytest.raises(OciError, match="timed out"):
        repo.get_blob(digest_of(b"anything"))


def test_the_classic_signature_checks_out_with_an_independent_verifier(registry, connect, tmp_path):
    """What `cosign verify --key` checks, done with Python's `cryptography`
    (OpenSSL) instead of vedette's own code: the .sig tag, the simple-signing
    layer, the DER signature over the exact payload bytes, the digest named."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    repo = connect(registry.host, "vedette/interop")
    key = make_key(tmp_path / "keys")
    digest, _ = publish(repo, key, "stable", docker_reference=f"{registry.host}/vedette/interop")
    signature_manifest = repo.get_manifest(digest.replace(":", "-") + ".sig").json()
    assert signature_manifest["mediaType"] == OCI_MANIFEST
    (layer,) = signature_manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = repo.get_blob(layer["digest"])
    payload_json = json.loads(payload)
    assert payload_json["critical"]["type"] == "cosign container image signature"
    assert payload_json["critical"]["image"]["docker-manifest-digest"] == digest
    assert payload_json["critical"]["identity"]["docker-reference"] == (
        f"{registry.host}/vedette/interop"
    )
    assert payload_json["optional"] is None
    public = serialization.load_pem_public_key(key.public_path.read_bytes())
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # raises if it does not


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("sha256:" + "ab" * 32, True),
        ("sha256:" + "AB" * 32, False),  # the text form is lowercase
        ("sha256:" + "ab" * 31, False),
        ("blake3:" + "ab" * 32, False),  # OCI content is addressed by SHA-256
        ("sha256:", False),
        ("stable", False),
    ],
)
def test_digests_are_checked_by_the_core_parser(text, valid):
    assert is_digest(text) is valid
    assert names_digest(text) is (":" in text)
    if valid:
        assert check_digest(text) == text
    else:
        with pytest.raises(OciError, match="not a sha256 digest"):
            check_digest(text)
