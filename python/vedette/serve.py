"""``vedette serve``: the adapter listener on uvicorn."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shlex
import signal
import tempfile
from pathlib import Path

import click

from vedette.config import (
    AgentConfig,
    CallerConfig,
    Config,
    FsMount,
    ListenConfig,
    ToolsConfig,
    load_config,
    token_digest,
)

EXAMPLE_AGENT = "example-assistant"
EXAMPLE_CALLER = "example-adapter"
# Where the example's data folder appears to the agent and its policy.
EXAMPLE_MOUNT = "/data"


def example_dir() -> Path:
    """The example shipped beside the package (source checkout) or inside it (wheel)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "examples", package.parents[1] / "examples"):
        if (candidate / "agent.json").is_file():
            return candidate
    raise click.ClickException("the embedded example is not installed with this copy of vedette")


def example_config(host: str, port: int, token: str) -> Config:
    """The example's own agent, policy, caller and state folder; the other settings
    (quota, store, limits) come from the defaults and ``VEDETTE_*`` variables."""
    examples = example_dir()
    state = Path(tempfile.mkdtemp(prefix="vedette-example-"))
    base = load_config(None)
    return dataclasses.replace(
        base,
        node_id="example-node",
        state_dir=state,
        listen=ListenConfig(host=host, port=port),
        tools=ToolsConfig(fs_mounts=(FsMount(EXAMPLE_MOUNT, examples / "data"),)),
        callers=(CallerConfig(EXAMPLE_CALLER, EXAMPLE_AGENT, token_sha256=token_digest(token)),),
        agents=(AgentConfig(EXAMPLE_AGENT, examples / "agent.json", examples / "bundle"),),
    )


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="--listen")
    return host.strip("[]"), int(port)


@click.command("serve")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml")
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8797).")
@click.option("--example", is_flag=True, help="Run the embedded example agent and policy.")
def serve(config_path: Path | None, listen: str | None, example: bool) -> None:
    """Serve the adapter API: POST /v1/tool decides, runs and records tool calls."""
    import uvicorn

    from vedette.api import create_app
    from vedette.config import ConfigError
    from vedette.runtime.interceptor import Runtime

    host, port = parse_listen(listen) if listen else ("127.0.0.1", 8797)
    token = None
    try:
        if example:
            token = os.environ.get("VEDETTE_EXAMPLE_TOKEN") or secrets.token_urlsafe(24)
            config = example_config(host, port, token)
        else:
            overrides: dict[str, object] = {}
            if listen:
                overrides = {"listen.host": host, "listen.port": port}
            config = load_config(config_path, overrides=overrides)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err
    runtime = Runtime(config)
    url = f"http://{config.listen.host}:{config.listen.port}"
    click.echo(f"vedette serving {url} (node {config.node_id}, store {config.store_dir})")
    if token is not None:
        _print_example_help(url, token)
    # uvicorn drains in-flight calls on SIGTERM/SIGINT, then re-raises the
    # signal; these handlers turn that into a normal exit so the store closes.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    try:
        uvicorn.run(
            create_app(runtime),
            host=config.listen.host,
            port=config.listen.port,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    finally:
        runtime.close()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _print_example_help(url: str, token: str) -> None:
    allowed = '{"tool": "echo", "args": {"text": "hello"}}'
    denied = '{"tool": "fs.read", "args": {"path": "/etc/passwd"}}'
    click.echo(f"caller token: {token}")
    click.echo(f"fs.read is allowed under {EXAMPLE_MOUNT} (the example's data folder)")
    for label, body in (("allowed", allowed), ("denied", denied)):
        command = (
            f"curl -s {url}/v1/tool -H {shlex.quote('Authorization: Bearer ' + token)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
        click.echo(f"{label}: {command}")
