"""Side-by-side: vedette's ECDSA P-256 signing (ring) against pyca/cryptography (OpenSSL).

Both sides sign and verify the same payload, interleaved, in the same run.
Run with the test extra installed (it brings `cryptography`):

    python bench/compare_signing.py            # prints and updates bench/RESULTS.md
    python bench/compare_signing.py --quick    # fewer rounds, no file written
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from report import compare, comparison_table, format_seconds, machine, write_section

from vedette.releases import signing

# The size of a cosign simple-signing payload: what a release verification checks.
PAYLOAD = os.urandom(300)
PASSWORD = b"bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds; do not write RESULTS.md")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    facts = machine()
    print(facts)

    private_pem, public_pem = signing.generate_key_pair(PASSWORD)
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "k.key"
        key_path.write_bytes(private_pem)
        start = time.perf_counter()
        key = signing.load_private_key(key_path, PASSWORD)
        open_s = time.perf_counter() - start
    public = key.public_key()
    # The anchor gets its own P-256 key (vedette never exports a private key in
    # the clear); ECDSA's cost does not depend on which key of the curve it is.
    anchor_private = ec.generate_private_key(ec.SECP256R1())
    anchor_public = anchor_private.public_key()
    anchor_pem = anchor_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    algorithm = ec.ECDSA(hashes.SHA256())
    signature = key.sign(PAYLOAD)
    anchor_signature = anchor_private.sign(PAYLOAD, algorithm)
    signature_b64 = base64.b64encode(signature).decode()
    anchor_b64 = base64.b64encode(anchor_signature).decode()
    # Each side accepts the other's signatures before anything is timed.
    signing.verify_payload(PAYLOAD, anchor_b64, anchor_pem)
    vedette_key_in_openssl = serialization.load_pem_public_key(public_pem)
    assert isinstance(vedette_key_in_openssl, ec.EllipticCurvePublicKey)
    vedette_key_in_openssl.verify(signature, PAYLOAD, algorithm)

    def anchor_verify_payload() -> None:
        loaded = serialization.load_pem_public_key(anchor_pem)
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        loaded.verify(base64.b64decode(anchor_b64), PAYLOAD, algorithm)

    rows = [
        compare(
            "verify 300 B (loaded key)",
            "cryptography",
            lambda: anchor_public.verify(anchor_signature, PAYLOAD, algorithm),
            lambda: public.verify(PAYLOAD, signature),
            rounds=rounds,
        ),
        compare(
            "verify_payload 300 B (PEM key + base64 signature)",
            "cryptography",
            anchor_verify_payload,
            lambda: signing.verify_payload(PAYLOAD, signature_b64, public_pem),
            rounds=rounds,
        ),
        compare(
            "sign 300 B",
            "cryptography",
            lambda: anchor_private.sign(PAYLOAD, algorithm),
            lambda: key.sign(PAYLOAD),
            rounds=rounds,
        ),
    ]
    # scrypt at cosign's parameters dominates opening a key file; hashlib runs the
    # same KDF in OpenSSL.
    start = time.perf_counter()
    hashlib.scrypt(PASSWORD, salt=os.urandom(32), n=65536, r=8, p=1, dklen=32, maxmem=2**27)
    scrypt_s = time.perf_counter() - start

    table = comparison_table(rows)
    print(table)
    print(f"open key file: {format_seconds(open_s)}; hashlib.scrypt: {format_seconds(scrypt_s)}")
    body = f"""## signing

Machine: {facts}.
Command: `python bench/compare_signing.py` ({rounds} interleaved rounds; median per-call time).
ECDSA P-256 / SHA-256 over a 300-byte payload (the size of a cosign simple-signing
payload); vedette signs and verifies with ring, the anchor is pyca/cryptography (OpenSSL).
No goal is set for signing in the issue; these are reported. The machine's 2 cores are
shared with other builds (see the load average), so the per-round ranges are wide.

{table}

Opening a cosign key file (`load_private_key`, scrypt N=65536 r=8 p=1 + secretbox):
{format_seconds(open_s)}, against {format_seconds(scrypt_s)} for the same scrypt alone in
`hashlib.scrypt` (one run each; the KDF is meant to be slow and runs without the GIL).
"""
    if not args.quick:
        write_section("signing", body)


if __name__ == "__main__":
    main()
