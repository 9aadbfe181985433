"""schemathesis against the live API's own /openapi.json: no 5xx, every answer
fits the documented schema for its status, and invalid input is refused."""

import subprocess
import sys
from pathlib import Path

from live_server import live_server
from runtime_fixtures import TOKENS, runtime_config

from vedette.api import create_app
from vedette.runtime.interceptor import Runtime

SCHEMATHESIS = Path(sys.executable).with_name("st")


def test_schemathesis_finds_no_server_error_and_no_contract_breach(tmp_path):
    assert SCHEMATHESIS.exists(), "schemathesis comes with the test extra"
    runtime = Runtime(runtime_config(tmp_path))
    try:
        with live_server(create_app(runtime)) as url:
            result = subprocess.run(
                [
                    str(SCHEMATHESIS), "run", f"{url}/openapi.json",
                    "--checks", "not_a_server_error,status_code_conformance,"
                    "response_schema_conformance,negative_data_rejection",
                    "--header", f"Authorization: Bearer {TOKENS['adapter-a']}",
                    "--max-examples", "60", "--generation-deterministic",
                    "--no-color",
                ],
                capture_output=True, text=True, timeout=600, cwd=tmp_path,
            )  # fmt: skip
    finally:
        runtime.close()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
