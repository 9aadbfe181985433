"""Signing keys: vedette against itself, against pyca/cryptography, and against
published cosign/sigstore fixtures (tests/data/cosign/README.md names their sources)."""

import base64
import hashlib
import json

import pytest
from conftest import DATA
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vedette._core import generate_key_pair as core_generate_key_pair
from vedette.errors import KeyFileError, SignatureError
from vedette.releases.signing import (
    PublicKey,
    TrustedKeys,
    generate_key_pair,
    load_private_key,
    load_public_key,
    sign_payload,
    verify_payload,
)

COSIGN = DATA / "cosign"
PASSWORD = b"correct horse"


def fast_pair(password: bytes = PASSWORD) -> tuple[bytes, bytes]:
    """A key pair with cheap scrypt parameters, for tests that are not about the KDF."""
    return core_generate_key_pair(password, scrypt_n=16)


@pytest.fixture
def key_files(tmp_path):
    private_pem, public_pem = fast_pair()
    (tmp_path / "k.key").write_bytes(private_pem)
    (tmp_path / "k.pub").write_bytes(public_pem)
    return tmp_path / "k.key", tmp_path / "k.pub"


def test_sign_and_verify_round_trip(key_files):
    key = load_private_key(key_files[0], PASSWORD)
    signature = sign_payload(b"payload", key)
    verify_payload(b"payload", signature, key_files[1].read_bytes())
    assert key.public_key() == load_public_key(key_files[1])


def test_str_password_is_utf8(tmp_path):
    private_pem, _ = fast_pair("pässword".encode())
    (tmp_path / "k.key").write_bytes(private_pem)
    load_private_key(tmp_path / "k.key", "pässword")


def test_flipped_signature_byte_is_refused(key_files):
    key = load_private_key(key_files[0], PASSWORD)
    raw = bytearray(key.sign(b"payload"))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(SignatureError, match="does not verify"):
        verify_payload(b"payload", base64.b64encode(raw).decode(), key_files[1].read_bytes())


def test_other_payload_and_wrong_key_are_refused(key_files):
    key = load_private_key(key_files[0], PASSWORD)
    signature = sign_payload(b"payload", key)
    with pytest.raises(SignatureError):
        verify_payload(b"payload.", signature, key_files[1].read_bytes())
    _, other_pub = fast_pair()
    with pytest.raises(SignatureError):
        verify_payload(b"payload", signature, other_pub)


@pytest.mark.parametrize("bad", ["", "not base64!", "QUJD" * 40, "QUJD"])
def test_unreadable_signatures_are_signature_errors(key_files, bad):
    with pytest.raises(SignatureError):
        verify_payload(b"payload", bad, key_files[1].read_bytes())


def test_wrong_password_names_the_cause(key_files):
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(key_files[0], b"not it")


def _sealed_body(private_pem: bytes) -> dict:
    lines = private_pem.decode().strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


def _reseal(body: dict | str, label: str = "ENCRYPTED SIGSTORE PRIVATE KEY") -> bytes:
    text = body if isinstance(body, str) else json.dumps(body)
    b64 = base64.b64encode(text.encode()).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def _mutations(private_pem: bytes):
    body = _sealed_body(private_pem)
    yield "PEM", b"this is not a key file"
    yield "JSON", _reseal("{not json")
    yield "base64", _reseal({**body, "ciphertext": "@@@"})
    yield "nonce", _reseal({**body, "cipher": {**body["cipher"], "nonce": "AAAA"}})
    yield "cipher.name", _reseal({**body, "cipher": {**body["cipher"], "name": "aes-gcm"}})
    yield "kdf.name", _reseal({**body, "kdf": {**body["kdf"], "name": "pbkdf2"}})
    hostile = {**body["kdf"], "params": {"N": 2**30, "r": 8, "p": 1}}
    yield "bounds", _reseal({**body, "kdf": hostile})
    yield "more than one", private_pem + private_pem
    yield "unencrypted", serialization_pkcs8()


def serialization_pkcs8() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_malformed_key_files_are_key_file_errors(tmp_path):
    private_pem, _ = fast_pair()
    cases = list(_mutations(private_pem))
    assert len(cases) == 9
    for needle, data in cases:
        path = tmp_path / "bad.key"
        path.write_bytes(data)
        with pytest.raises(KeyFileError, match=needle):
            load_private_key(path, PASSWORD)


def test_other_curves_and_algorithms_are_refused_by_name():
    with pytest.raises(KeyFileError, match="P-384"):
        load_public_key(COSIGN / "p384.pub")
    with pytest.raises(KeyFileError, match="Ed25519"):
        load_public_key(COSIGN / "ed25519.pub")
    with pytest.raises(SignatureError, match="P-384"):
        verify_payload(b"x", "QUJD", (COSIGN / "p384.pub").read_bytes())


def test_vedette_signatures_verify_with_cryptography(key_files):
    key = load_private_key(key_files[0], PASSWORD)
    public = serialization.load_pem_public_key(key_files[1].read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    for payload in (b"", b"payload", bytes(range(256)) * 100):
        public.verify(key.sign(payload), payload, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(key.sign(b"a"), b"b", ec.ECDSA(hashes.SHA256()))


def test_cryptography_signatures_verify_with_vedette():
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = private.sign(b"payload", ec.ECDSA(hashes.SHA256()))
    verify_payload(b"payload", base64.b64encode(signature).decode(), pem)
    with pytest.raises(SignatureError):
        verify_payload(b"payload2", base64.b64encode(signature).decode(), pem)
    # The key id is the SHA-256 of the SPKI DER, as cryptography encodes it.
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert PublicKey.from_pem(pem).key_id == "sha256:" + hashlib.sha256(der).hexdigest()


def test_vedette_key_file_opens_the_same_key_cryptography_sees(key_files):
    # The public key written beside the private key is the private key's own.
    key = load_private_key(key_files[0], PASSWORD)
    assert key.public_key().pem() == key_files[1].read_bytes()


def test_cosign_written_key_files_load():
    legacy = load_private_key(COSIGN / "ecdsa_encrypted_private.key", "123")
    current = load_private_key(COSIGN / "cosign_generated_encrypted_empty_private.key", b"")
    for key in (legacy, current):
        key.public_key().verify(b"x", key.sign(b"x"))
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(COSIGN / "ecdsa_encrypted_private.key", "1234")


def test_published_sigstore_signature_vector_verifies():
    payload = (COSIGN / "sign_me.txt").read_bytes()
    signature = (COSIGN / "sign_me.sig").read_text().strip()
    public_pem = (COSIGN / "ecdsa_test.pub").read_bytes()
    verify_payload(payload, signature, public_pem)
    with pytest.raises(SignatureError):
        verify_payload(payload + b"!", signature, public_pem)


def test_generate_key_pair_uses_cosign_parameters():
    private_pem, public_pem = generate_key_pair(PASSWORD)
    assert private_pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = _sealed_body(private_pem)
    assert body["kdf"]["name"] == "scrypt"
    assert body["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(body["kdf"]["salt"])) == 32
    assert body["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(body["cipher"]["nonce"])) == 24
    assert PublicKey.from_pem(public_pem).pem() == public_pem


def test_trusted_keys_accept_either_key_during_rotation(tmp_path):
    old_priv, old_pub = fast_pair()
    new_priv, new_pub = fast_pair()
    (tmp_path / "old.pub").write_bytes(old_pub)
    (tmp_path / "new.pub").write_bytes(new_pub)
    (tmp_path / "old.key").write_bytes(old_priv)
    (tmp_path / "new.key").write_bytes(new_priv)
    trusted = TrustedKeys.from_files([tmp_path / "old.pub", tmp_path / "new.pub"])
    assert len(trusted) == 2
    for name, pub in (("old", old_pub), ("new", new_pub)):
        key = load_private_key(tmp_path / f"{name}.key", PASSWORD)
        assert trusted.verify(b"release", sign_payload(b"release", key)) == PublicKey.from_pem(pub)
    stranger_priv, _ = fast_pair()
    (tmp_path / "stranger.key").write_bytes(stranger_priv)
    stranger = load_private_key(tmp_path / "stranger.key", PASSWORD)
    with pytest.raises(SignatureError, match="any of the 2 trusted keys"):
        trusted.verify(b"release", sign_payload(b"release", stranger))
    # After the rotation only the new key is trusted.
    rotated = TrustedKeys.from_files([tmp_path / "new.pub"])
    old_key = load_private_key(tmp_path / "old.key", PASSWORD)
    with pytest.raises(SignatureError):
        rotated.verify(b"release", sign_payload(b"release", old_key))


def test_trusted_keys_refuse_an_empty_set():
    with pytest.raises(KeyFileError):
        TrustedKeys([])


def test_private_key_repr_holds_no_key_material(key_files):
    key = load_private_key(key_files[0], PASSWORD)
    text = repr(key)
    assert key.public_key().key_id in text
    assert "PRIVATE" not in text


def test_missing_key_file_is_a_key_file_error(tmp_path):
    with pytest.raises(KeyFileError, match="No such file"):
        load_public_key(tmp_path / "absent.pub")
