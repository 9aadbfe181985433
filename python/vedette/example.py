"""The embedded example: an agent, its policy and data shipped inside the
package, served by ``vedette serve --example`` as a signed release like any
other (its key made at the first start), with its state in the user's state
folder."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

from vedette.config import (
    AgentConfig,
    CallerConfig,
    Config,
    FsMount,
    ToolsConfig,
    default_state_dir,
    load_config,
    token_digest,
)
from vedette.errors import ServeError

EXAMPLE_AGENT = "example-assistant"
EXAMPLE_CALLER = "example-adapter"
# Where the example's data folder appears to the agent and its policy.
EXAMPLE_MOUNT = "/data"


def example_dir() -> Path:
    """The example shipped inside the package (in the wheel and in a checkout)."""
    examples = Path(__file__).resolve().parent / "examples"
    if not (examples / "agent.json").is_file():
        raise ServeError(f"the embedded example is missing from {examples}")
    return examples


def example_state_dir() -> Path:
    """Where ``--example`` keeps its state: one folder per user, kept between runs
    (so its evidence can be read afterwards, and nothing piles up in /tmp)."""
    return default_state_dir() / "example"


def example_config(host: str, port: int, token: str, state_dir: Path | None = None) -> Config:
    """The example's own agent, policy, caller and state folder; the other settings
    (quota, store, limits) come from the defaults and ``VEDETTE_*`` variables. The
    agent runs a signed release, like any other (:func:`example_release`)."""
    examples = example_dir()
    state = state_dir or example_state_dir()
    release, public_key = example_release(state, examples)
    base = load_config(None)
    return dataclasses.replace(
        base,
        node_id="example-node",
        state_dir=state,
        listen=dataclasses.replace(base.listen, host=host, port=port),
        tools=ToolsConfig(fs_mounts=(FsMount(EXAMPLE_MOUNT, examples / "data"),)),
        callers=(CallerConfig(EXAMPLE_CALLER, EXAMPLE_AGENT, token_sha256=token_digest(token)),),
        agents=(AgentConfig(EXAMPLE_AGENT, release=release, keys=(public_key,)),),
    )


def example_release(state: Path, examples: Path) -> tuple[str, Path]:
    """The example's agent and policy as a signed release in ``state``: its
    reference (``oci-layout://…:example``) and the public key that verifies it.

    The signing key is made at the first start and kept in the state folder
    (0700), its password beside it: it guards nothing the folder does not, and
    exists so that the example runs the same signed path as a fleet. The
    release is packed again when the shipped example files change."""
    from vedette._core import generate_key_pair
    from vedette.durable import write_durably
    from vedette.hashing import sha256
    from vedette.releases.pack import bundle_bytes, pack_release
    from vedette.releases.signing import load_private_key

    folder = state / "example-release"
    layout, tag = folder / "layout", "example"
    key_path, password_path = folder / "cosign.key", folder / "cosign.password"
    public_path, packed_path = folder / "cosign.pub", folder / "packed.sha256"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (key_path.is_file() and public_path.is_file() and password_path.is_file()):
            password = secrets.token_urlsafe(24)
            # A light scrypt: the password lies beside the key, so a costly
            # one would only slow the first start down.
            private_pem, public_pem = generate_key_pair(password.encode(), scrypt_n=1024)
            write_durably(password_path, password.encode(), 0o600)
            write_durably(key_path, private_pem, 0o600)
            write_durably(public_path, public_pem, 0o644)
            packed_path.unlink(missing_ok=True)
        agent_json = (examples / "agent.json").read_bytes()
        bundle = bundle_bytes(examples / "bundle")
        inputs = str(sha256(agent_json + b"\0" + bundle)).encode()
        if not packed_path.is_file() or packed_path.read_bytes() != inputs:
            key = load_private_key(key_path, password_path.read_text())
            pack_release(layout, tag, agent_json, bundle, key)
            write_durably(packed_path, inputs, 0o600)
    except Exception as err:  # a state folder we cannot write, a damaged key file
        raise ServeError(f"the example's signed release could not be made: {err}") from err
    return f"oci-layout://{layout}:{tag}", public_path
