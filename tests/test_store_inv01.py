"""INV-01: one local store directory, one process."""

import os
import subprocess
import sys

import pytest

from vedette._core import shared_fs_name
from vedette.store import SegmentStore, StoreLockedError, StoreRefusedError

CEILING = 1 << 20


def test_second_open_in_same_process_is_locked(tmp_path):
    with (
        SegmentStore.open(tmp_path / "s", ceiling_bytes=CEILING, node_id="node-a"),
        pytest.raises(StoreLockedError, match="locked"),
    ):
        SegmentStore.open(tmp_path / "s", ceiling_bytes=CEILING, node_id="node-a")
    # Closing releases it.
    SegmentStore.open(tmp_path / "s", ceiling_bytes=CEILING, node_id="node-a").close()


def test_second_process_gets_store_locked_error(tmp_path):
    code = (
        "import sys\n"
        "from vedette.store import SegmentStore, StoreLockedError\n"
        "try:\n"
        f"    SegmentStore.open({str(tmp_path / 's')!r}, ceiling_bytes={CEILING}, node_id='x')\n"
        "except StoreLockedError as err:\n"
        "    print('locked:', err)\n"
        "    sys.exit(3)\n"
    )
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=CEILING, node_id="node-a"):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "LOCK" in result.stdout


def test_new_directory_is_created_private(tmp_path):
    SegmentStore.open(tmp_path / "s", ceiling_bytes=CEILING, node_id="node-a").close()
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_group_or_world_writable_directory_is_refused(tmp_path, mode):
    store_dir = tmp_path / "s"
    store_dir.mkdir()
    store_dir.chmod(mode)
    with pytest.raises(StoreRefusedError) as info:
        SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a")
    assert info.value.check == "permissions"
    assert str(store_dir) in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by another user needs root")
def test_directory_owned_by_another_user_is_refused(tmp_path):
    store_dir = tmp_path / "s"
    store_dir.mkdir(mode=0o700)
    os.chown(store_dir, 65534, 65534)
    with pytest.raises(StoreRefusedError) as info:
        SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a")
    assert info.value.check == "owner"


def test_network_filesystem_magics_are_named():
    assert shared_fs_name(0x6969) == "NFS"
    assert shared_fs_name(0xFF534D42) == "CIFS"
    assert shared_fs_name(0x517B) == "SMB"
    assert shared_fs_name(0x65735546).startswith("FUSE")
    assert shared_fs_name(0xEF53) is None  # ext4
    assert shared_fs_name(0x01021994) is None  # tmpfs
