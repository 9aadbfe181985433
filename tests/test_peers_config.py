"""The [peers] table: every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vedette.config import ConfigError, load_config

FILES = 'ca = "pki/ca.crt"\ncert = "pki/a.crt"\nkey = "pki/a.key"\ncrl = "pki/crl.pem"\n'


def load(tmp_path: Path, table: str) -> object:
    path = tmp_path / "vedette.toml"
    path.write_text("[peers]\n" + table)
    return load_config(path, env={})


def test_peers_table_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, FILES + 'listen = "0.0.0.0:8798"\nstatic = ["10.1.2.3:8798"]\n')
    peers = config.peers  # type: ignore[attr-defined]
    assert peers.ca == tmp_path / "pki" / "ca.crt"
    assert peers.crl == tmp_path / "pki" / "crl.pem"
    assert peers.static == ("10.1.2.3:8798",)
    assert load_config(None, env={}).peers is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('ca = "ca.crt"\n', "peers.cert: required"),
        (FILES + 'listen = "localhost:8798"\n', "peers.listen: expected IP:PORT"),
        (FILES + 'static = ["10.0.0.1"]\n', "peers.static: expected IP:PORT"),
        (FILES + "quota_margin = 1.5\n", "peers.quota_margin"),
        (FILES + "rate_in_bytes_per_s = 0\n", "peers.rate_in_bytes_per_s"),
        (FILES + 'beacon_send_to = ["10.0.0.255:8799"]\n', "peers.beacon_send_to"),
        (FILES + "colour = 1\n", "peers.colour: unknown key"),
    ],
)
def test_peers_errors_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(tmp_path, table)
