"""The [[agents]] settings of signed releases: checked on load, errors name the key."""

from __future__ import annotations

import pytest

from vedette.config import ConfigError, load_config


def load(tmp_path, agent_lines: str):
    path = tmp_path / "vedette.toml"
    path.write_text('[[agents]]\nname = "recon"\n' + agent_lines)
    return load_config(path, env={})


def test_a_release_agent_loads_with_its_keys_relative_to_the_file(tmp_path):
    config = load(
        tmp_path,
        'release = "oci://127.0.0.1:5000/vedette/recon:stable"\nkeys = ["keys/a.pub"]\n'
        "poll_interval_s = 5\nmax_staleness_s = 3600\ninsecure = true\n",
    )
    agent = config.agents[0]
    assert agent.release == "oci://127.0.0.1:5000/vedette/recon:stable"
    assert agent.keys == (tmp_path / "keys" / "a.pub",)
    assert (agent.poll_interval_s, agent.max_staleness_s, agent.insecure) == (5.0, 3600.0, True)
    assert agent.manifest is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('release = "oci://h:5000/r:stable"\n', "agents[0].keys: required with release"),
        ('release = "oci://h:5000/r:stable"\nkeys = ["k.pub"]\nmanifest = "a.json"\n',
         "agents[0].release: give either release or manifest and bundle"),
        ('release = "https://h/r:stable"\nkeys = ["k.pub"]\n', "agents[0].release: expected oci://"),
        ('release = "oci://h:5000/r"\nkeys = ["k.pub"]\n', "agents[0].release:"),
        ('manifest = "a.json"\n', "agents[0].bundle: required"),
        ('release = "oci://h:5000/r:stable"\nkeys = ["k.pub"]\npoll_interval_s = 0\n',
         "agents[0].poll_interval_s"),
    ],
)  # fmt: skip
def test_bad_release_settings_name_the_key(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(tmp_path, lines)


def test_a_relative_image_layout_is_relative_to_the_file(tmp_path):
    config = load(tmp_path, 'release = "oci-layout://usb/recon:stable"\nkeys = ["k.pub"]\n')
    assert config.agents[0].release == f"oci-layout://{tmp_path / 'usb' / 'recon'}:stable"


def test_a_digest_pin_loads(tmp_path):
    """A digest pins one release: the one way back to an older one."""
    pin = "oci://h:5000/r@sha256:" + "0" * 64
    config = load(tmp_path, f'release = "{pin}"\nkeys = ["k.pub"]\n')
    assert config.agents[0].release == pin


def test_the_releases_table_sets_the_clock_skew_and_the_floor_interval(tmp_path):
    path = tmp_path / "vedette.toml"
    path.write_text("[releases]\nclock_skew_s = 60\ntime_floor_interval_s = 120\n")
    config = load_config(path, env={})
    assert (config.releases.clock_skew_s, config.releases.time_floor_interval_s) == (60.0, 120.0)
    assert load_config(None, env={}).releases.clock_skew_s == 300.0
    with pytest.raises(ConfigError, match=r"releases\.clock_skew_s"):
        load_config(None, env={"VEDETTE_RELEASES_CLOCK_SKEW_S": "-1"})
