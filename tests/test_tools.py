"""Tools run by the runtime: built-ins confined to their roots, HTTP tools, plugins,
and the timeout and output limits around every call."""

import asyncio
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vedette.config import FsMount, HttpToolConfig, ToolsConfig
from vedette.hashing import sha256
from vedette.runtime.tools import ToolFailed, ToolRegistry, UnknownTool


def run(registry: ToolRegistry, name: str, args: dict):
    return asyncio.run(registry.execute(name, args))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "secret.txt").write_text("outside")
    return data


@pytest.fixture
def files(root: Path) -> ToolRegistry:
    registry = ToolRegistry(
        ToolsConfig(fs_mounts=(FsMount("/data", root),), fs_max_read_bytes=1000)
    )
    yield registry
    registry.close()


def test_echo_returns_its_arguments_with_a_digest_of_the_output(files):
    outcome = run(files, "echo", {"msg": "héllo", "n": [1, 2]})
    assert outcome.output == {"msg": "héllo", "n": [1, 2]}
    assert outcome.output_digest == sha256(outcome.output_json)
    assert json.loads(outcome.output_json) == outcome.output


def test_fs_read_reads_text_and_binary_under_the_root(files, root):
    text = run(files, "fs.read", {"path": "/data/a.csv"}).output
    assert text == {
        "path": "/data/a.csv",
        "size": 8,
        "encoding": "utf-8",
        "content": "x,y\n1,2\n",
    }
    binary = run(files, "fs.read", {"path": "/data/sub/b.bin"}).output
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["content"]) == bytes(range(256))


def test_fs_list_lists_without_following_links(files, root):
    (root / "link").symlink_to(root.parent / "secret.txt")
    listing = run(files, "fs.list", {"path": "/data"}).output
    assert listing["path"] == "/data"
    assert listing["entries"] == [
        {"name": "a.csv", "type": "file", "size": 8},
        {"name": "link", "type": "symlink", "size": len(str(root.parent / "secret.txt"))},
        {"name": "sub", "type": "dir", "size": listing["entries"][2]["size"]},
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "outside the mounted folders"),
        ("/data/../secret.txt", "empty, '.' or '..' component"),
        ("/data/./a.csv", "empty, '.' or '..' component"),
        ("/data//a.csv", "empty, '.' or '..' component"),
        ("/data/a.csv/", "empty, '.' or '..' component"),
        ("data/a.csv", "must be absolute"),
        ("", "non-empty string"),
        (42, "non-empty string"),
        ("/data/a.csv\x00.txt", "NUL"),
        ("/data/missing.txt", "No such file"),
        ("/data/a.csv/x", "not a directory"),
        ("/data", "not a regular file"),
        ("/datax/a.csv", "outside the mounted folders"),
    ],
)
def test_fs_read_refuses_escapes_and_bad_paths(files, root, path, message):
    with pytest.raises(ToolFailed, match=message):
        run(files, "fs.read", {"path": path})


def test_host_paths_are_not_paths_agents_can_use(files, root):
    with pytest.raises(ToolFailed, match="outside the mounted folders"):
        run(files, "fs.read", {"path": str(root / "a.csv")})


def test_symlinks_are_refused_at_any_depth(files, root):
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("escape")
    (root / "to-secret").symlink_to(root.parent / "secret.txt")
    (root / "to-outside").symlink_to(outside)
    (root / "to-inside").symlink_to(root / "a.csv")
    for path in ("to-secret", "to-outside/x.txt", "to-inside"):
        with pytest.raises(ToolFailed, match="symbolic link"):
            run(files, "fs.read", {"path": f"/data/{path}"})
    with pytest.raises(ToolFailed, match="symbolic link"):
        run(files, "fs.list", {"path": "/data/to-outside"})


def test_special_files_and_large_files_are_refused(files, root):
    os.mkfifo(root / "pipe")
    with pytest.raises(ToolFailed, match="not a regular file"):
        run(files, "fs.read", {"path": "/data/pipe"})  # must not block
    (root / "big.txt").write_bytes(b"x" * 1001)
    with pytest.raises(ToolFailed, match="1001 bytes, over the 1000-byte limit"):
        run(files, "fs.read", {"path": "/data/big.txt"})


def test_a_hard_link_to_a_file_outside_the_mount_is_not_read(files, root):
    os.link(root.parent / "secret.txt", root / "linked.txt")
    with pytest.raises(ToolFailed, match="2 hard links; linked files are not read"):
        run(files, "fs.read", {"path": "/data/linked.txt"})
    # The same file read through one name only is fine again once the link is gone.
    (root.parent / "secret.txt").unlink()
    assert run(files, "fs.read", {"path": "/data/linked.txt"}).output["content"] == "outside"


def test_a_missing_mount_folder_names_the_mount_not_the_host_folder(tmp_path):
    gone = tmp_path / "srv-field-data"
    registry = ToolRegistry(ToolsConfig(fs_mounts=(FsMount("/data", gone),)))
    try:
        with pytest.raises(ToolFailed) as raised:
            run(registry, "fs.read", {"path": "/data/a.csv"})
        assert str(raised.value) == "mount '/data' is unavailable (No such file or directory)"
        assert str(tmp_path) not in str(raised.value)
    finally:
        registry.close()


def test_an_os_error_in_a_tool_is_reported_without_the_file_name(tmp_path):
    class Opener:
        name = "opener"

        def run(self, args):
            return (tmp_path / "nowhere" / "x").read_text()

    registry = ToolRegistry(ToolsConfig())
    registry.register(Opener())
    try:
        with pytest.raises(ToolFailed) as raised:
            run(registry, "opener", {})
        assert str(raised.value) == "FileNotFoundError: No such file or directory"
    finally:
        registry.close()


def test_no_mounts_means_no_files():
    registry = ToolRegistry(ToolsConfig())
    with pytest.raises(ToolFailed, match="outside the mounted folders"):
        run(registry, "fs.read", {"path": "/data/a.csv"})
    registry.close()


def test_mounts_must_be_clean_absolute_paths(root):
    for at in ("data", "/data/../x", "/./data"):
        with pytest.raises(ValueError, match="clean absolute path"):
            ToolRegistry(ToolsConfig(fs_mounts=(FsMount(at, root),)))


class Sleeper:
    name = "sleeper"

    def run(self, args):
        time.sleep(args["seconds"])
        return "woke"


class AsyncSleeper:
    name = "async-sleeper"

    async def run(self, args):
        await asyncio.sleep(args["seconds"])
        return "woke"


class Faulty:
    name = "faulty"

    def run(self, args):
        if args.get("mode") == "raise":
            raise RuntimeError("disk on fire")
        if args.get("mode") == "set":
            return {1, 2}
        if args.get("mode") == "nan":
            return float("nan")
        return "x" * args["size"]


@pytest.fixture
def guarded() -> ToolRegistry:
    registry = ToolRegistry(ToolsConfig(timeout_s=0.2, max_output_bytes=100))
    for tool in (Sleeper(), AsyncSleeper(), Faulty()):
        registry.register(tool)
    yield registry
    registry.close()


def test_timeouts_fail_the_call(guarded):
    assert run(guarded, "sleeper", {"seconds": 0}).output == "woke"
    for name in ("sleeper", "async-sleeper"):
        with pytest.raises(ToolFailed, match=r"did not finish in 0\.2 s") as caught:
            run(guarded, name, {"seconds": 5})
        assert caught.value.kind == "timeout"


@pytest.mark.parametrize(
    ("args", "kind", "message"),
    [
        ({"mode": "raise"}, "error", "RuntimeError: disk on fire"),
        ({"mode": "set"}, "bad_output", "non-JSON output"),
        ({"mode": "nan"}, "bad_output", "non-JSON output"),
        ({"size": 200}, "output_too_large", "over the 100-byte limit"),
    ],
)
def test_tool_failures_are_reported_not_raised_raw(guarded, args, kind, message):
    with pytest.raises(ToolFailed, match=message) as caught:
        run(guarded, "faulty", args)
    assert caught.value.kind == kind


def test_per_tool_limits_override_the_defaults():
    from vedette.config import ToolLimits

    config = ToolsConfig(
        timeout_s=5,
        max_output_bytes=100,
        limits=(ToolLimits("sleeper", timeout_s=0.1), ToolLimits("faulty", max_output_bytes=1000)),
    )
    registry = ToolRegistry(config)
    registry.register(Sleeper())
    registry.register(Faulty())
    with pytest.raises(ToolFailed, match=r"did not finish in 0\.1 s"):
        run(registry, "sleeper", {"seconds": 2})
    assert len(run(registry, "faulty", {"size": 500}).output) == 500
    with pytest.raises(ToolFailed, match="over the 100-byte limit"):
        run(registry, "echo", {"x": "y" * 200})
    registry.close()


def test_unknown_and_duplicate_tools(guarded):
    with pytest.raises(UnknownTool, match=r"no tool named 'shell\.exec'"):
        run(guarded, "shell.exec", {})
    with pytest.raises(ValueError, match="registered twice"):
        guarded.register(Sleeper())
    with pytest.raises(TypeError, match="is not a tool"):
        guarded.register(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["1tool", "a b", "../x", "x" * 129, "tool/sub", "\u00e9cho"])
def test_a_tool_name_follows_the_one_name_rule(guarded, name):
    class Named:
        def run(self, args):
            return args

    tool = Named()
    tool.name = name  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="must be an ASCII letter, then"):
        guarded.register(tool)  # type: ignore[arg-type]
    assert name not in guarded


class ToolEndpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = body.get("mode")
        if mode == "slow":
            time.sleep(2)
        status, payload = 200, json.dumps({"got": body}).encode()
        if mode == "fail":
            status = 500
        elif mode == "huge":
            payload = json.dumps({"x": "y" * 5000}).encode()
        elif mode == "text":
            payload = b"not json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except BrokenPipeError:
            pass  # the client gave up first (the timeout case)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ToolEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tool"
    server.shutdown()
    server.server_close()


def test_http_tool_posts_args_and_returns_json(endpoint):
    config = ToolsConfig(
        http=(HttpToolConfig("remote", endpoint, timeout_s=0.5, max_response_bytes=1000),)
    )
    registry = ToolRegistry(config)
    assert run(registry, "remote", {"q": "hi"}).output == {"got": {"q": "hi"}}
    cases = [
        ({"mode": "fail"}, "error", "HTTP 500"),
        ({"mode": "huge"}, "output_too_large", "1000-byte response limit"),
        ({"mode": "text"}, "bad_output", "non-JSON"),
        ({"mode": "slow"}, "timeout", "timed out"),
    ]
    for args, kind, message in cases:
        with pytest.raises(ToolFailed, match=message) as caught:
            run(registry, "remote", args)
        assert caught.value.kind == kind
    registry.close()


def test_http_tool_unreachable_is_a_tool_failure():
    registry = ToolRegistry(ToolsConfig(http=(HttpToolConfig("gone", "http://127.0.0.1:9/x"),)))
    with pytest.raises(ToolFailed, match="unreachable") as caught:
        run(registry, "gone", {})
    assert caught.value.kind == "error"
    registry.close()


def test_plugins_come_from_the_entry_point_group(tmp_path, monkeypatch):
    package = tmp_path / "weather_tool.py"
    package.write_text(
        "class Forecast:\n"
        "    name = 'weather.forecast'\n"
        "    def run(self, args):\n"
        "        return {'city': args['city'], 'sky': 'clear'}\n"
        "def make(config):\n"
        "    return Forecast()\n"
    )
    dist = tmp_path / "weather_tool-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: weather-tool\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vedette.tools]\nforecast = weather_tool:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ToolRegistry(ToolsConfig())
    assert "weather.forecast" in registry.names()
    assert run(registry, "weather.forecast", {"city": "Oslo"}).output == {
        "city": "Oslo",
        "sky": "clear",
    }
    registry.close()
    sys.modules.pop("weather_tool", None)
