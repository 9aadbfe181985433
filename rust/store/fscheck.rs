//! INV-01 checks on the store directory, and the exclusive lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{flock, statfs, FlockOperation};

use super::error::StoreError;

/// `f_type` magic numbers (linux/magic.h and the file systems' own headers) of
/// file systems that are shared between machines or may be.
pub const SHARED_FS_MAGIC: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (
        0x6573_5546,
        "FUSE (possibly network-backed: sshfs, s3fs, glusterfs, ...)",
    ),
    (0x0102_1997, "9P (v9fs)"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "kAFS"),
    (0x00C3_6400, "Ceph"),
    (0x7375_7245, "Coda"),
    (0x564C, "NCP (NetWare)"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x2003_0528, "OrangeFS"),
];

/// The name of a shared file system with magic `f_type`, or `None` for a local one.
pub fn shared_fs_name(f_type: i64) -> Option<&'static str> {
    // f_type is a signed long on most targets; CIFS's magic has the top bit of
    // 32 set and may come back sign-extended.
    let f_type = f_type & 0xFFFF_FFFF;
    SHARED_FS_MAGIC
        .iter()
        .find(|(magic, _)| *magic == f_type)
        .map(|(_, name)| *name)
}

fn refuse(check: &str, path: &Path, detail: String) -> StoreError {
    StoreError::Refused {
        check: check.to_string(),
        path: path.to_path_buf(),
        detail,
    }
}

/// Enforces INV-01 (no shared state) at open: the directory exists (created
/// 0700 if absent), is a local file system, is owned by the effective user and
/// is not writable by group or others.
pub(super) fn check_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|err| StoreError::io("create store directory", dir, err))?;
        }
        Err(err) => return Err(StoreError::io("stat store directory", dir, err)),
        Ok(_) => {}
    }
    let meta =
        std::fs::metadata(dir).map_err(|err| StoreError::io("stat store directory", dir, err))?;
    if !meta.is_dir() {
        return Err(refuse("directory", dir, "is not a directory".into()));
    }
    let stats =
        statfs(dir).map_err(|err| StoreError::io("statfs store directory", dir, err.into()))?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    if let Some(name) = shared_fs_name(stats.f_type as i64) {
        return Err(refuse(
            "local-filesystem",
            dir,
            format!("is on a {name} file system; the store must be on a local disk (INV-01)"),
        ));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(
            "owner",
            dir,
            format!(
                "is owned by uid {}, not by the running user (uid {euid})",
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(
            "permissions",
            dir,
            format!(
                "has mode {mode:04o}: it must not be writable by group or others (use chmod 700)"
            ),
        ));
    }
    Ok(())
}

/// The block size of the file system holding `dir` (its allocation unit).
pub(super) fn block_size(dir: &Path) -> Result<u64, StoreError> {
    let stats =
        statfs(dir).map_err(|err| StoreError::io("statfs store directory", dir, err.into()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok((stats.f_bsize as u64).max(512))
}

/// An exclusive `flock` on the store's `LOCK` file, held while the store is open.
///
/// Enforces INV-01 (one process, one store): `flock` locks belong to an open
/// file description, so a second open in the same process conflicts as well
/// as one in another process. The kernel drops the lock when the process dies.
///
/// On Linux a second lock that does not live in the directory is taken as
/// well: an abstract Unix socket bound to a name derived from the
/// directory's canonical path. If the directory is deleted while the store is
/// open, a second opener that recreates it at the same path finds the name
/// taken and is refused (docs/contracts.md, "Directory").
pub(super) struct DirLock {
    _file: File,
    #[cfg(target_os = "linux")]
    _name: Option<std::os::unix::net::UnixListener>,
}

/// Binds the abstract socket that names `dir` while it is open.
#[cfg(target_os = "linux")]
fn bind_name(dir: &Path) -> Result<Option<std::os::unix::net::UnixListener>, StoreError> {
    use std::os::linux::net::SocketAddrExt;
    let Ok(canonical) = std::fs::canonicalize(dir) else {
        return Ok(None);
    };
    let digest = crate::hashing::blake3(canonical.as_os_str().as_encoded_bytes());
    let name = format!("vedette-store-{}", &digest.hex()[..32]);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|err| StoreError::io("name store lock", dir, err))?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(StoreError::Locked {
            path: dir.join(LOCK_FILE),
        }),
        Err(err) => Err(StoreError::io("lock store directory", dir, err)),
    }
}

pub(super) const LOCK_FILE: &str = "LOCK";

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|err| StoreError::io("open lock file", &path, err))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock {
                _file: file,
                #[cfg(target_os = "linux")]
                _name: bind_name(dir)?,
            }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked { path }),
            Err(err) => Err(StoreError::io("lock store directory", &path, err.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_magics_are_refused_and_local_ones_pass() {
        assert_eq!(shared_fs_name(0x6969), Some("NFS"));
        assert_eq!(shared_fs_name(0xFF53_4D42), Some("CIFS"));
        // CIFS's magic sign-extended, as a 64-bit signed f_type reports it.
        assert_eq!(
            shared_fs_name(0xFFFF_FFFF_FF53_4D42_u64 as i64),
            Some("CIFS")
        );
        assert_eq!(shared_fs_name(0xFE53_4D42), Some("SMB2"));
        assert!(shared_fs_name(0x6573_5546).unwrap().starts_with("FUSE"));
        for local in [0xEF53, 0x0102_1994, 0x5846_5342, 0x9123_683E, 0x794C_7630] {
            // ext4, tmpfs, xfs, btrfs, overlayfs
            assert_eq!(shared_fs_name(local), None, "{local:#x}");
        }
    }

    #[test]
    fn group_writable_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        check_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = check_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("permissions") && err.contains("0770"), "{err}");
    }

    #[test]
    fn second_lock_in_same_process_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(tmp.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(tmp.path()),
            Err(StoreError::Locked { .. })
        ));
    }
}
