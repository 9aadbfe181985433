"""cosign's encrypted key file, sealed and opened by an independent implementation
(hashlib.scrypt + libsodium's secretbox via PyNaCl + pyca/cryptography), checked
against vedette in both directions."""

import base64
import hashlib
import json
import os

import nacl.exceptions
import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vedette.errors import KeyFileError
from vedette.releases.signing import PublicKey, generate_key_pair, load_private_key


def pem_body(text: bytes) -> tuple[str, bytes]:
    lines = text.decode().strip().splitlines()
    assert lines[0].startswith("-----BEGIN ")
    return lines[0][len("-----BEGIN ") : -len("-----")], base64.b64decode("".join(lines[1:-1]))


def open_like_cosign(private_pem: bytes, password: bytes) -> bytes:
    """go-securesystemslib's encrypted.Decrypt, written from its description."""
    label, body = pem_body(private_pem)
    assert label == "ENCRYPTED SIGSTORE PRIVATE KEY"
    doc = json.loads(body)
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["cipher"]["name"] == "nacl/secretbox"
    params = doc["kdf"]["params"]
    key = hashlib.scrypt(
        password,
        salt=base64.b64decode(doc["kdf"]["salt"]),
        n=params["N"],
        r=params["r"],
        p=params["p"],
        dklen=32,
        maxmem=2**28,
    )
    box = nacl.secret.SecretBox(key)
    return box.decrypt(
        base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])
    )


def seal_like_cosign(pkcs8_der: bytes, password: bytes, label: str) -> bytes:
    """go-securesystemslib's encrypted.Encrypt, written from its description."""
    salt, nonce = os.urandom(32), os.urandom(24)
    key = hashlib.scrypt(password, salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=2**27)
    ciphertext = nacl.secret.SecretBox(key).encrypt(pkcs8_der, nonce).ciphertext
    body = json.dumps(
        {
            "kdf": {
                "name": "scrypt",
                "params": {"N": 32768, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode(),
            },
            "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
            "ciphertext": base64.b64encode(ciphertext).decode(),
        },
        separators=(",", ":"),
    )
    b64 = base64.b64encode(body.encode()).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def test_vedette_key_file_opens_independently_to_the_same_key():
    private_pem, public_pem = generate_key_pair(b"pw")
    der = open_like_cosign(private_pem, b"pw")
    private = serialization.load_der_private_key(der, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP256R1)
    spki = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki == public_pem
    # The independently opened key signs; vedette verifies with the .pub it wrote.
    signature = private.sign(b"release", ec.ECDSA(hashes.SHA256()))
    PublicKey.from_pem(public_pem).verify(b"release", signature)
    with pytest.raises(nacl.exceptions.CryptoError):
        open_like_cosign(private_pem, b"not the password")


@pytest.mark.parametrize(
    "label", ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"]
)
def test_independently_sealed_key_loads_in_vedette(tmp_path, label):
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "cosign.key"
    path.write_bytes(seal_like_cosign(der, b"pw", label))
    key = load_private_key(path, b"pw")
    signature = key.sign(b"release")
    private.public_key().verify(signature, b"release", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(path, b"other")


def test_independently_sealed_p384_key_is_refused_by_name(tmp_path):
    der = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "p384.key"
    path.write_bytes(seal_like_cosign(der, b"pw", "ENCRYPTED SIGSTORE PRIVATE KEY"))
    with pytest.raises(KeyFileError, match="P-384"):
        load_private_key(path, b"pw")
