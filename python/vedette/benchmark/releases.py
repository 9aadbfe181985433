"""Release verification: the four steps of ``verify_release`` on a signed release.

A release of the embedded example (its agent manifest and policy bundle) is
built, signed with a throwaway key and written to an OCI image layout in the
scratch folder; then ``oci-layout://DIR:TAG`` is verified again and again:
signature, OCI digests, behavioural fingerprint, policy hash and compiling the
bundle. No registry and no network are involved.
"""

from __future__ import annotations

import secrets
import statistics
import time

from vedette.benchmark.common import BenchError, Metric, Scratch
from vedette.errors import VedetteError

TAG = "bench"


def measure(scratch: Scratch, seconds: float) -> Metric:
    from vedette._core import decrypt_private_key, generate_key_pair
    from vedette.example import EXAMPLE_AGENT, example_dir
    from vedette.policy import Bundle
    from vedette.releases.artifacts import build_release, push_release
    from vedette.releases.cosign import sign_classic
    from vedette.releases.layout import LayoutRepository
    from vedette.releases.oci import parse_reference
    from vedette.releases.repositories import open_repository
    from vedette.releases.signing import PublicKey, TrustedKeys
    from vedette.releases.verify import verify_release

    examples = example_dir()
    try:
        # A throwaway key: sealed with a cheap scrypt cost, it never leaves this run.
        password = secrets.token_bytes(16)
        private_pem, public_pem = generate_key_pair(password, scrypt_n=1024)
        private = decrypt_private_key(private_pem, password)
        trusted = TrustedKeys([PublicKey.from_pem(public_pem)])
        agent_json = (examples / "agent.json").read_bytes()
        bundle = Bundle.load(examples / "bundle").to_tar_gz()
        layout = scratch.folder("release-layout")
        writer = LayoutRepository(layout, create=True)
        built = build_release(agent_json, bundle)
        push_release(
            writer,
            built,
            TAG,
            sign=lambda digest: sign_classic(writer, digest, "vedette/bench", private),
        )
        repo = open_repository(parse_reference(f"oci-layout://{layout}:{TAG}"))
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while not times or time.perf_counter() < deadline:
            started = time.perf_counter()
            verify_release(repo, TAG, trusted, agent_name=EXAMPLE_AGENT)
            times.append(time.perf_counter() - started)
    except (VedetteError, OSError) as err:
        raise BenchError(f"release verification: {err}") from err
    return Metric("release.verify_ms", "release verification (median)",
                  statistics.median(times) * 1e3, "ms", "lower",
                  f"{len(times)} verifications, oci-layout")  # fmt: skip
