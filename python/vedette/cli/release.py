"""``vedette release push|verify|pull|status``.

Every command that talks to a registry speaks HTTPS unless given
``--insecure``; ``--ca FILE`` trusts a private CA; a registry user comes from
``--username`` (or ``VEDETTE_REGISTRY_USERNAME``) with the password in
``VEDETTE_REGISTRY_PASSWORD``. References are ``[oci://]HOST[:PORT]/REPO:TAG``
(or ``@sha256:…``) and ``oci-layout://DIR:TAG``.

Exit codes (docs/operations.md, "Exit codes"): ``verify`` (and ``pull --key``)
exit 1 when the release fails a verification step, 2 when it cannot be read (an
unreachable registry, a missing tag) or a key, a password or the configuration
cannot be used.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vedette.cli.errors import EXIT_CANNOT_RUN, EXIT_FAILED, CannotRun, CheckFailed
from vedette.errors import KeyFileError, OciError, ReleaseError, VerificationError

PASSWORD_ENV = "VEDETTE_PASSWORD"


def release_inputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """What a release is built from, and the key that signs it (push and pack)."""
    for option in reversed(
        [
            click.option("--agent", "agent_path", required=True,
                         type=click.Path(path_type=Path, exists=True),
                         help="The agent manifest (agent.json)."),
            click.option("--bundle", "bundle_path", required=True,
                         type=click.Path(path_type=Path, exists=True),
                         help="The policy bundle: a folder or a .tar.gz."),
            click.option("--key", "key_path", required=True,
                         type=click.Path(path_type=Path, exists=True),
                         help="cosign private key (password from $VEDETTE_PASSWORD or a prompt)."),
            click.option("--version", "version", help="Release version (default: the agent's)."),
            click.option("--expires-at",
                         help="RFC 3339 time after which nodes refuse the release."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


def registry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--insecure", is_flag=True, help="Plain HTTP to the registry (never the default)."
            ),
            click.option(
                "--ca",
                type=click.Path(path_type=Path, exists=True, dir_okay=False),
                help="PEM file of the CA that signed the registry's certificate.",
            ),
            click.option(
                "--username", help="Registry user (password: $VEDETTE_REGISTRY_PASSWORD)."
            ),
        ]
    ):
        command = option(command)
    return command


def _open(
    text: str, insecure: bool, ca: Path | None, username: str | None, *, create: bool = False
) -> Any:
    from vedette.releases.layout import LayoutRepository
    from vedette.releases.oci import RegistryAuth, parse_reference
    from vedette.releases.repositories import open_repository

    reference = parse_reference(text)
    if reference.kind == "layout" and create:
        assert reference.layout_dir is not None
        return reference, LayoutRepository(reference.layout_dir, create=True)
    repo = open_repository(
        reference, insecure=insecure, ca=ca, auth=RegistryAuth.from_environment(username)
    )
    return reference, repo


def _close(repo: Any) -> None:
    client = getattr(repo, "client", None)
    if client is not None:
        client.close()


def _password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise CannotRun(f"no password: set {PASSWORD_ENV} or run on a terminal to be prompted")
    entered: str = click.prompt("Password for the private key", hide_input=True, default="")
    return entered


@click.group("release")
def release_group() -> None:
    """Build, sign, push, pull and verify signed releases (OCI artifacts)."""


@release_group.command("push")
@release_inputs
@click.option("--to", "target", required=True, help="REGISTRY/REPO:TAG or oci-layout://DIR:TAG.")
@registry_options
def push_command(
    agent_path: Path, bundle_path: Path, key_path: Path, version: str | None,
    expires_at: str | None, target: str, insecure: bool, ca: Path | None, username: str | None,
) -> None:  # fmt: skip
    """Push the agent, policy and release artifacts to TARGET and sign the release.

    The signature is stored in cosign's classic layout: the sha256-<hex>.sig tag.
    """
    from vedette.errors import PolicyError
    from vedette.releases.artifacts import build_release, parse_time, push_release
    from vedette.releases.cosign import sign_classic
    from vedette.releases.pack import bundle_bytes
    from vedette.releases.signing import load_private_key

    try:
        if expires_at is not None:
            parse_time(expires_at)
        key = load_private_key(key_path, _password())
        bundle = bundle_bytes(bundle_path)
        built = build_release(
            agent_path.read_bytes(), bundle, version=version, expires_at=expires_at
        )
    except (KeyFileError, PolicyError, VerificationError, OSError) as err:
        raise CannotRun(str(err)) from None
    try:
        reference, repo = _open(target, insecure, ca, username, create=True)
        if reference.tag is None:
            raise CannotRun("push needs a tag: REGISTRY/REPO:TAG")
        try:
            click.echo(
                f"pushing {built.document.agent_name} {built.document.version} to {reference}"
            )

            def sign(digest: str) -> None:
                signature = sign_classic(repo, digest, reference.docker_reference(), key)
                click.echo(f"signed  {signature} (tag {digest.replace(':', '-')}.sig)")

            digest = push_release(repo, built, reference.tag, progress=click.echo, sign=sign)
        finally:
            _close(repo)
    except OciError as err:
        raise CannotRun(str(err)) from None
    click.echo(f"{reference.docker_reference()}@{digest}")


@release_group.command("pack")
@release_inputs
@click.option("--to", "folder", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="An OCI image-layout folder (made if missing).")  # fmt: skip
@click.option("--tag", default="latest", show_default=True, help="The tag the agent names.")
def pack_command(
    agent_path: Path, bundle_path: Path, key_path: Path, version: str | None,
    expires_at: str | None, folder: Path, tag: str,
) -> None:  # fmt: skip
    """Sign a local agent manifest and bundle into an OCI image layout folder.

    A node runs it, verified like any release, with
    release = "oci-layout://FOLDER:TAG" and the public key in keys.
    """
    from vedette.errors import PolicyError
    from vedette.releases.artifacts import parse_time
    from vedette.releases.pack import bundle_bytes, pack_release
    from vedette.releases.signing import load_private_key

    try:
        if expires_at is not None:
            parse_time(expires_at)
        key = load_private_key(key_path, _password())
        digest = pack_release(
            folder, tag, agent_path.read_bytes(), bundle_bytes(bundle_path), key,
            version=version, expires_at=expires_at, progress=click.echo,
        )  # fmt: skip
    except (KeyFileError, PolicyError, VerificationError, OciError, OSError) as err:
        raise CannotRun(str(err)) from None
    click.echo(f"packed {digest}; name it in the agent's table:")
    click.echo(f'release = "oci-layout://{folder.resolve()}:{tag}"')


@release_group.command("verify")
@click.argument("reference")
@click.option("--key", "keys", multiple=True, required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A trusted public key (repeat for several).")  # fmt: skip
@click.option("--agent", "agent_name", help="Refuse a release for another agent.")
@registry_options
def verify_command(
    reference: str, keys: tuple[Path, ...], agent_name: str | None, insecure: bool,
    ca: Path | None, username: str | None,
) -> None:  # fmt: skip
    """Verify REFERENCE: print each step's result, exit 1 at the first failure."""
    from vedette.releases.lifecycle import trusted_keys
    from vedette.releases.verify import STEP_NAMES, verify_release

    try:
        trusted = trusted_keys(keys)
    except (KeyFileError, OSError, ValueError) as err:
        raise CannotRun(str(err)) from None

    def report(step: int | str, detail: str) -> None:
        click.echo(f"ok    {_step_label(step, STEP_NAMES)}: {detail}")

    try:
        ref, repo = _open(reference, insecure, ca, username)
        try:
            verified = verify_release(
                repo, ref.reference, trusted, agent_name=agent_name, report=report
            )
        finally:
            _close(repo)
    except VerificationError as err:
        click.echo(f"FAIL  {_step_label(err.step, STEP_NAMES)}: {err}")
        click.echo(f"      expected: {err.expected}")
        click.echo(f"      actual:   {err.actual}")
        sys.exit(EXIT_FAILED)
    except ReleaseError as err:
        # OciError: the release could not be read, so nothing was verified
        # (python/vedette/releases/verify.py).
        click.echo(f"FAIL  fetch: {err}")
        sys.exit(EXIT_CANNOT_RUN)
    document = verified.document
    click.echo(f"verified {document.agent_name} {document.version} {verified.digest}")


def _step_label(step: int | str, names: dict[int | str, str]) -> str:
    name = names.get(step, str(step))
    return f"step {step} ({name})" if isinstance(step, int) else name


@release_group.command("pull")
@click.argument("reference")
@click.option("--to", "folder", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="An OCI image-layout folder (made if missing).")  # fmt: skip
@click.option("--key", "keys", multiple=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Verify what was pulled with these trusted keys.")  # fmt: skip
@registry_options
def pull_command(
    reference: str, folder: Path, keys: tuple[Path, ...], insecure: bool, ca: Path | None,
    username: str | None,
) -> None:  # fmt: skip
    """Copy a release and its signatures into an OCI image layout folder.

    For air-gapped nodes: serve it with release = "oci-layout://FOLDER:TAG".
    """
    from vedette.releases.layout import LayoutRepository
    from vedette.releases.lifecycle import trusted_keys
    from vedette.releases.verify import fetch_release, verify_release

    try:
        ref, repo = _open(reference, insecure, ca, username)
        try:
            target = LayoutRepository(folder, create=True)
            digest = fetch_release(repo, ref.reference, target, tag=ref.tag)
        finally:
            _close(repo)
        click.echo(
            f"pulled {digest} into oci-layout://{folder}" + (f":{ref.tag}" if ref.tag else "")
        )
        if keys:
            verified = verify_release(LayoutRepository(folder), digest, trusted_keys(keys))
            click.echo(f"verified {verified.document.agent_name} {verified.document.version}")
    except VerificationError as err:
        raise CheckFailed(f"{err} (expected {err.expected}, actual {err.actual})") from None
    except (ReleaseError, KeyFileError, OSError, ValueError) as err:
        raise CannotRun(str(err)) from None


@release_group.command("status")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(config_path: Path | None, as_json: bool) -> None:
    """Each agent's persisted release state, read from the state folder.

    The active release, the last-known-good one and the last contact with the
    control plane.
    """
    from vedette.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as err:
        raise CannotRun(str(err)) from None
    report: dict[str, Any] = {}
    for agent in config.agents:
        if agent.release is None:
            report[agent.name] = {"release": None, "local": str(agent.manifest)}
            continue
        state_file = config.state_dir / "releases" / agent.name / "state.json"
        try:
            state = json.loads(state_file.read_bytes())
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as err:
            state = {"error": f"{state_file}: {err}"}
        report[agent.name] = {"release": agent.release, **state}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for name, entry in report.items():
        click.echo(f"{name}:")
        for key, value in entry.items():
            click.echo(f"  {key}: {value}")
