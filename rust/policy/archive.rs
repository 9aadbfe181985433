//! Reading a bundle's files from a directory or a `.tar.gz`, and writing the
//! reproducible `.tar.gz` form. Only the bytes and their paths: what the
//! files mean is `bundle.rs`'s business.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use tar::{Archive, EntryType, Header};

use super::error::{BundleError, BundleRule};
use super::limits::BundleLimits;

/// A bundle's files by normalized path (`a/b/data.json`), in byte order.
pub type BundleFiles = BTreeMap<String, Vec<u8>>;

/// The file names that make up a bundle; everything else is ignored, as OPA does.
pub(super) const MANIFEST_FILE: &str = ".manifest";
pub(super) const DATA_FILES: [&str; 3] = ["data.json", "data.yaml", "data.yml"];
pub(super) const REGO_SUFFIX: &str = ".rego";

/// Whether a normalized path names a file that is part of the bundle.
pub(super) fn is_bundle_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path == MANIFEST_FILE || DATA_FILES.contains(&name) || name.ends_with(REGO_SUFFIX)
}

/// Enforces the path-form rule: a path inside a bundle is relative, made of
/// non-empty segments none of which is `.` or `..`, without backslashes or
/// control characters, within the length and depth bounds.
///
/// One leading `/` is accepted and means the bundle root, because `opa build`
/// writes its entries that way; a leading `./` (from `tar -C dir .`) likewise.
/// Nothing is ever extracted to disk, so such a path cannot escape anything.
/// Returns the normalized form (`a/b/data.json`), or `""` for the root itself.
pub fn normalize_path(raw: &str, limits: &BundleLimits) -> Result<String, BundleError> {
    let refuse = |why: &str| Err(BundleError::at(raw, BundleRule::PathForm, why));
    if raw.len() > limits.max_path_bytes {
        return refuse(&format!(
            "path is {} bytes long, over the {}-byte bound",
            raw.len(),
            limits.max_path_bytes
        ));
    }
    if raw.chars().any(|c| c.is_control()) {
        return refuse("path contains a control character");
    }
    if raw.contains('\\') {
        return refuse("path contains a backslash");
    }
    let mut rest = raw;
    if let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('/') {
        rest = stripped;
    }
    if rest.starts_with('/') {
        return refuse("absolute path");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest == "." {
        return Ok(String::new());
    }
    let mut depth = 0;
    for segment in rest.split('/') {
        match segment {
            "" => return refuse("empty path segment ('//')"),
            "." => return refuse("'.' path segment"),
            ".." => return refuse("'..' path segment climbs out of the bundle"),
            _ => depth += 1,
        }
    }
    if depth > limits.max_path_depth {
        return refuse(&format!(
            "path has {depth} segments, over the {}-segment bound",
            limits.max_path_depth
        ));
    }
    Ok(rest.to_string())
}

/// Counts entries and bytes against the bounds while a bundle is read.
struct Budget<'a> {
    limits: &'a BundleLimits,
    entries: usize,
    bytes: u64,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a BundleLimits) -> Budget<'a> {
        Budget {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    fn entry(&mut self, path: &str) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::at(
                path,
                BundleRule::EntryLimit,
                format!("more than {} entries", self.limits.max_entries),
            ));
        }
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64) -> Result<(), BundleError> {
        if size > self.limits.max_file_bytes {
            return Err(BundleError::at(
                path,
                BundleRule::SizeLimit,
                format!(
                    "file is {size} bytes, over the {}-byte bound",
                    self.limits.max_file_bytes
                ),
            ));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_decompressed_bytes {
            return Err(BundleError::at(
                path,
                BundleRule::SizeLimit,
                format!(
                    "files add up to more than the {}-byte bound",
                    self.limits.max_decompressed_bytes
                ),
            ));
        }
        Ok(())
    }
}

fn insert(files: &mut BundleFiles, path: String, bytes: Vec<u8>) -> Result<(), BundleError> {
    if files.contains_key(&path) {
        return Err(BundleError::at(
            path,
            BundleRule::DuplicatePath,
            "the same path appears twice",
        ));
    }
    files.insert(path, bytes);
    Ok(())
}

/// A reader that stops with an error once more than `remaining` bytes went
/// through, and remembers that it did: the decompressed-size bound.
struct Capped<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Probe one byte: a stream that ends exactly at the bound is fine.
            let mut probe = [0u8; 1];
            let n = self.inner.read(&mut probe)?;
            if n == 0 {
                return Ok(0);
            }
            self.exceeded = true;
            return Err(io::Error::other("decompressed size bound crossed"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads a gzip-compressed tar bundle held in memory.
pub(super) fn read_tar_gz(bytes: &[u8], limits: &BundleLimits) -> Result<BundleFiles, BundleError> {
    if bytes.len() as u64 > limits.max_compressed_bytes {
        return Err(BundleError::new(
            BundleRule::SizeLimit,
            format!(
                "archive is {} bytes, over the {}-byte bound",
                bytes.len(),
                limits.max_compressed_bytes
            ),
        ));
    }
    let mut capped = Capped {
        inner: GzDecoder::new(bytes),
        remaining: limits.max_decompressed_bytes,
        exceeded: false,
    };
    let result = read_tar_entries(&mut capped, limits);
    if capped.exceeded {
        return Err(BundleError::new(
            BundleRule::SizeLimit,
            format!(
                "archive decompresses to more than the {}-byte bound",
                limits.max_decompressed_bytes
            ),
        ));
    }
    result
}

fn unreadable(path: Option<&str>, err: &io::Error) -> BundleError {
    let detail = format!("not a readable gzip-compressed tar archive: {err}");
    match path {
        Some(path) => BundleError::at(path, BundleRule::Unreadable, detail),
        None => BundleError::new(BundleRule::Unreadable, detail),
    }
}

fn read_tar_entries<R: Read>(
    reader: &mut R,
    limits: &BundleLimits,
) -> Result<BundleFiles, BundleError> {
    let mut archive = Archive::new(reader);
    let mut budget = Budget::new(limits);
    let mut files = BundleFiles::new();
    let mut seen_dirs = std::collections::BTreeSet::new();
    let entries = archive.entries().map_err(|err| unreadable(None, &err))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| unreadable(None, &err))?;
        let raw_path = String::from_utf8(entry.path_bytes().into_owned()).map_err(|_| {
            BundleError::new(BundleRule::PathForm, "an entry's path is not valid UTF-8")
        })?;
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            // pax global headers (written by `git archive`) carry no file.
            continue;
        }
        budget.entry(&raw_path)?;
        let path = normalize_path(&raw_path, limits)?;
        match entry_type {
            EntryType::Directory => {
                if !seen_dirs.insert(path.clone()) {
                    return Err(BundleError::at(
                        raw_path,
                        BundleRule::DuplicatePath,
                        "the same directory appears twice",
                    ));
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                if path.is_empty() {
                    return Err(BundleError::at(
                        raw_path,
                        BundleRule::PathForm,
                        "a file entry names the bundle root",
                    ));
                }
                let size = entry
                    .header()
                    .size()
                    .map_err(|err| unreadable(Some(&path), &err))?;
                budget.file(&path, size)?;
                // The header's size is checked above, and the read is bounded
                // by it again in case the header lies.
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut bytes)
                    .map_err(|err| unreadable(Some(&path), &err))?;
                if is_bundle_file(&path) {
                    insert(&mut files, path, bytes)?;
                } else if files.contains_key(&path) {
                    return Err(BundleError::at(
                        path,
                        BundleRule::DuplicatePath,
                        "the same path appears twice",
                    ));
                }
            }
            other => {
                return Err(BundleError::at(
                    raw_path,
                    BundleRule::EntryType,
                    format!(
                        "{} entries are not allowed: only regular files and directories",
                        entry_type_name(other)
                    ),
                ));
            }
        }
    }
    // tar stops at its end-of-archive blocks; read on to the end of the gzip
    // stream so its checksum is verified and a damaged archive is refused.
    io::copy(archive.into_inner(), &mut io::sink()).map_err(|err| unreadable(None, &err))?;
    Ok(files)
}

fn entry_type_name(entry_type: EntryType) -> &'static str {
    match entry_type {
        EntryType::Symlink => "symbolic link",
        EntryType::Link => "hard link",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "sparse file",
        _ => "unsupported",
    }
}

/// Reads a bundle laid out as a directory tree.
pub(super) fn read_dir(root: &Path, limits: &BundleLimits) -> Result<BundleFiles, BundleError> {
    let mut budget = Budget::new(limits);
    let mut files = BundleFiles::new();
    walk(root, "", 0, limits, &mut budget, &mut files)?;
    Ok(files)
}

fn io_error(path: &str, err: &io::Error) -> BundleError {
    BundleError::at(path, BundleRule::Unreadable, err.to_string())
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    limits: &BundleLimits,
    budget: &mut Budget<'_>,
    files: &mut BundleFiles,
) -> Result<(), BundleError> {
    let shown = if prefix.is_empty() { "." } else { prefix };
    let mut children = Vec::new();
    for child in fs::read_dir(dir).map_err(|err| io_error(shown, &err))? {
        children.push(child.map_err(|err| io_error(shown, &err))?);
    }
    // Sorted, so the first error found does not depend on directory order.
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let name = child.file_name();
        let Some(name) = name.to_str() else {
            return Err(BundleError::at(
                format!("{prefix}/{}", name.to_string_lossy()),
                BundleRule::PathForm,
                "file name is not valid UTF-8",
            ));
        };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        budget.entry(&path)?;
        let path = normalize_path(&path, limits)?;
        // symlink_metadata: a link is refused, never followed.
        let meta = child.metadata().map_err(|err| io_error(&path, &err))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if depth + 1 >= limits.max_path_depth {
                return Err(BundleError::at(
                    path,
                    BundleRule::PathForm,
                    format!("nested deeper than {} directories", limits.max_path_depth),
                ));
            }
            walk(&child.path(), &path, depth + 1, limits, budget, files)?;
        } else if kind.is_file() {
            if !is_bundle_file(&path) {
                continue;
            }
            // Read at most one byte past the bound: enough to know it was crossed.
            let mut bytes = Vec::new();
            fs::File::open(child.path())
                .and_then(|file| file.take(limits.max_file_bytes + 1).read_to_end(&mut bytes))
                .map_err(|err| io_error(&path, &err))?;
            budget.file(&path, bytes.len() as u64)?;
            insert(files, path, bytes)?;
        } else {
            let what = if kind.is_symlink() {
                "symbolic links are"
            } else {
                "devices, FIFOs and sockets are"
            };
            return Err(BundleError::at(
                path,
                BundleRule::EntryType,
                format!("{what} not allowed: only regular files and directories"),
            ));
        }
    }
    Ok(())
}

/// Writes files as a reproducible `.tar.gz`: sorted paths, fixed modes,
/// owners and times, a fixed gzip header. The same files give the same bytes.
pub(super) fn write_tar_gz(files: &BundleFiles) -> io::Result<Vec<u8>> {
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    let mut builder = tar::Builder::new(gzip);
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, bytes) in files {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, path, bytes.as_slice())?;
    }
    builder.into_inner()?.finish()
}
