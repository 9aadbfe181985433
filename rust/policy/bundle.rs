//! An OPA-format bundle: `.manifest`, data files mounted at their directory
//! path, and Rego modules, read with the bounds of [`BundleLimits`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use super::archive::{self, BundleFiles, DATA_FILES, MANIFEST_FILE, REGO_SUFFIX};
use super::error::{BundleError, BundleRule};
use super::hash::{canonical_form, file_digest, policy_hash_of};
use super::limits::BundleLimits;
use crate::hashing::{canonical_json_from_str, sha256, Digest};

/// The Rego dialect a bundle is written in (`rego_version` in `.manifest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegoVersion {
    /// Pre-1.0 syntax (`allow { ... }` without `if`).
    V0,
    /// OPA 1.0 syntax, the default.
    V1,
}

impl RegoVersion {
    /// The `rego_version` number `.manifest` uses for this dialect: 0 or 1.
    pub const fn number(self) -> u8 {
        match self {
            RegoVersion::V0 => 0,
            RegoVersion::V1 => 1,
        }
    }
}

/// The `.manifest` of a bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleManifest {
    /// The bundle's revision string as `.manifest` gives it; empty when it gives none.
    pub revision: String,
    /// Slash-separated path prefixes the bundle owns; `[""]` (the default) owns all.
    pub roots: Vec<String>,
    /// The Rego dialect every module is written in; V1 when `.manifest` does not say.
    pub rego_version: RegoVersion,
    /// Free-form, carried along unchanged.
    pub metadata: Map<String, Value>,
}

impl Default for BundleManifest {
    fn default() -> BundleManifest {
        BundleManifest {
            revision: String::new(),
            roots: vec![String::new()],
            rego_version: RegoVersion::V1,
            metadata: Map::new(),
        }
    }
}

/// A Rego module of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegoModule {
    /// The module's path inside the bundle, slash-separated and normalized.
    pub path: String,
    /// The module's Rego text (checked to be UTF-8).
    pub source: String,
}

/// A bundle whose files passed every bundle rule except those that need the
/// Rego compiler (parsing, package roots, the entry point), which
/// [`super::PolicyEngine`] checks when it is built.
#[derive(Clone, Debug)]
pub struct Bundle {
    files: BundleFiles,
    manifest: BundleManifest,
    data: Value,
    modules: Vec<RegoModule>,
    policy_hash: Digest,
}

impl Bundle {
    /// Reads a bundle from a directory or a `.tar.gz` file.
    pub fn from_path(path: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
        let unreadable = |err: std::io::Error| {
            BundleError::at(
                path.display().to_string(),
                BundleRule::Unreadable,
                err.to_string(),
            )
        };
        let meta = fs::metadata(path).map_err(unreadable)?;
        if meta.is_dir() {
            return Bundle::from_files(archive::read_dir(path, limits)?, limits);
        }
        // One byte past the bound is enough to know it was crossed.
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|file| {
                file.take(limits.max_compressed_bytes + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(unreadable)?;
        Bundle::from_tar_gz(&bytes, limits)
    }

    /// Reads a bundle from the bytes of a `.tar.gz`.
    pub fn from_tar_gz(bytes: &[u8], limits: &BundleLimits) -> Result<Bundle, BundleError> {
        // The archive is outside data: should a reader panic on it, the
        // bundle is refused rather than the panic reaching the caller.
        std::panic::catch_unwind(|| {
            Bundle::from_files(archive::read_tar_gz(bytes, limits)?, limits)
        })
        .unwrap_or_else(|_| {
            Err(BundleError::new(
                BundleRule::Unreadable,
                "reading the archive failed unexpectedly (a reader panicked)",
            ))
        })
    }

    /// Builds a bundle from its files (paths already normalized).
    pub fn from_files(files: BundleFiles, _limits: &BundleLimits) -> Result<Bundle, BundleError> {
        let mut digests = BTreeMap::new();
        let manifest = match files.get(MANIFEST_FILE) {
            Some(bytes) => {
                let (canonical, value) = canonical_form(MANIFEST_FILE, bytes)?;
                digests.insert(MANIFEST_FILE, sha256(&canonical));
                parse_manifest(value)?
            }
            None => BundleManifest::default(),
        };
        let mut data = Value::Object(Map::new());
        let mut modules = Vec::new();
        for (path, bytes) in &files {
            if path == MANIFEST_FILE {
                continue;
            }
            let (dir, name) = match path.rsplit_once('/') {
                Some((dir, name)) => (dir, name),
                None => ("", path.as_str()),
            };
            if DATA_FILES.contains(&name) {
                let (canonical, value) = canonical_form(path, bytes)?;
                digests.insert(path.as_str(), sha256(&canonical));
                let mount: Vec<&str> = if dir.is_empty() {
                    Vec::new()
                } else {
                    dir.split('/').collect()
                };
                check_data_roots(path, &mount, &value, &manifest.roots)?;
                mount_data(path, &mut data, &mount, value)?;
            } else {
                digests.insert(path.as_str(), file_digest(path, bytes)?);
            }
            if name.ends_with(REGO_SUFFIX) {
                let source = String::from_utf8(bytes.clone()).map_err(|_| {
                    BundleError::at(path, BundleRule::Rego, "module is not valid UTF-8")
                })?;
                modules.push(RegoModule {
                    path: path.clone(),
                    source,
                });
            }
        }
        if modules.is_empty() {
            return Err(BundleError::new(
                BundleRule::EntryPoint,
                "the bundle has no .rego module, so no data.vedette.decision rule",
            ));
        }
        let policy_hash = policy_hash_of(&digests)?;
        Ok(Bundle {
            files,
            manifest,
            data,
            modules,
            policy_hash,
        })
    }

    /// The bundle's `.manifest`, or the defaults when it has none.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The merged data document (`data` in Rego, before rules).
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// Every `.rego` module of the bundle, in path order.
    pub fn modules(&self) -> &[RegoModule] {
        &self.modules
    }

    /// The bundle's files by path, as read.
    pub fn files(&self) -> &BundleFiles {
        &self.files
    }

    /// SHA-256 of the canonical file listing (see [`super::hash::policy_hash`]).
    pub fn policy_hash(&self) -> Digest {
        self.policy_hash
    }

    /// The reproducible `.tar.gz` form of this bundle.
    pub fn to_tar_gz(&self) -> std::io::Result<Vec<u8>> {
        archive::write_tar_gz(&self.files)
    }
}

/// Parses JSON refusing duplicate member names: a document with two values
/// for one key means different things to different readers.
pub(crate) fn parse_strict_json(text: &str) -> Result<Value, String> {
    canonical_json_from_str(text).map_err(|err| err.to_string())?;
    serde_json::from_str(text).map_err(|err| err.to_string())
}

fn parse_manifest(value: Value) -> Result<BundleManifest, BundleError> {
    let fail = |detail: String| BundleError::at(MANIFEST_FILE, BundleRule::Manifest, detail);
    let Value::Object(fields) = value else {
        return Err(fail("must be a JSON object".into()));
    };
    let mut manifest = BundleManifest::default();
    for (key, value) in fields {
        match key.as_str() {
            "revision" => match value {
                Value::String(revision) => manifest.revision = revision,
                _ => return Err(fail("'revision' must be a string".into())),
            },
            "roots" => manifest.roots = parse_roots(value).map_err(fail)?,
            "rego_version" => {
                manifest.rego_version = match value.as_u64() {
                    Some(0) => RegoVersion::V0,
                    Some(1) => RegoVersion::V1,
                    _ => return Err(fail(format!("'rego_version' must be 0 or 1, got {value}"))),
                }
            }
            "metadata" => match value {
                Value::Object(metadata) => manifest.metadata = metadata,
                _ => return Err(fail("'metadata' must be an object".into())),
            },
            "wasm" | "file_rego_versions" => {
                return Err(fail(format!(
                    "'{key}' is not supported: vedette evaluates Rego only, all in one rego_version"
                )))
            }
            other => {
                return Err(fail(format!(
                    "unknown field {other:?}: expected revision, roots, rego_version, metadata"
                )))
            }
        }
    }
    Ok(manifest)
}

fn parse_roots(value: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("'roots' must be an array of strings".into());
    };
    let mut roots = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(root) = item else {
            return Err("'roots' must be an array of strings".into());
        };
        if root.starts_with('/') || root.ends_with('/') || root.contains("//") {
            return Err(format!(
                "root {root:?} must be slash-separated segments without leading, trailing or doubled '/'"
            ));
        }
        roots.push(root);
    }
    for (i, a) in roots.iter().enumerate() {
        for b in &roots[i + 1..] {
            if is_under(a, b) || is_under(b, a) {
                return Err(format!("roots {a:?} and {b:?} overlap"));
            }
        }
    }
    Ok(roots)
}

/// Whether `path` (slash-separated) lies at or below `root`.
fn is_under(path: &str, root: &str) -> bool {
    root.is_empty()
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// Whether the path given as segments lies at or below one of the roots.
pub(crate) fn within_roots(segments: &[&str], roots: &[String]) -> bool {
    let path = segments.join("/");
    roots.iter().any(|root| is_under(&path, root))
}

/// Enforces the roots rule for data: every value a data file adds must lie
/// under one of the manifest's roots. A mount point above a root is allowed
/// as long as the object there only has keys leading into roots.
fn check_data_roots(
    file: &str,
    mount: &[&str],
    value: &Value,
    roots: &[String],
) -> Result<(), BundleError> {
    if within_roots(mount, roots) {
        return Ok(());
    }
    let path = mount.join("/");
    let leads_to_root = roots
        .iter()
        .any(|root| mount.is_empty() || is_under(root, &path));
    match value {
        Value::Object(members) if leads_to_root => {
            for (key, member) in members {
                let mut deeper = mount.to_vec();
                deeper.push(key);
                check_data_roots(file, &deeper, member, roots)?;
            }
            Ok(())
        }
        _ => Err(BundleError::at(
            file,
            BundleRule::Roots,
            format!(
                "data at {:?} is outside the manifest roots {roots:?}",
                if path.is_empty() { "/" } else { &path }
            ),
        )),
    }
}

/// Merges `value` into `data` at `mount`; objects merge key by key, anything
/// else must not collide with a value another file already put there.
fn mount_data(
    file: &str,
    data: &mut Value,
    mount: &[&str],
    value: Value,
) -> Result<(), BundleError> {
    let mut node = data;
    for segment in mount {
        let Value::Object(members) = node else {
            return Err(conflict(file, mount));
        };
        node = members
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if mount.is_empty() && !value.is_object() {
        return Err(BundleError::at(
            file,
            BundleRule::Data,
            "a data file at the bundle root must hold a JSON object",
        ));
    }
    merge(file, mount, node, value)
}

fn merge(file: &str, at: &[&str], into: &mut Value, value: Value) -> Result<(), BundleError> {
    match (into, value) {
        (Value::Object(existing), Value::Object(incoming)) => {
            for (key, member) in incoming {
                match existing.get_mut(&key) {
                    Some(slot) => {
                        let mut deeper = at.to_vec();
                        deeper.push(&key);
                        merge(file, &deeper, slot, member)?;
                    }
                    None => {
                        existing.insert(key, member);
                    }
                }
            }
            Ok(())
        }
        (slot @ Value::Object(_), value) if slot.as_object().is_some_and(Map::is_empty) => {
            *slot = value;
            Ok(())
        }
        _ => Err(conflict(file, at)),
    }
}

fn conflict(file: &str, at: &[&str]) -> BundleError {
    BundleError::at(
        file,
        BundleRule::Data,
        format!(
            "data at {:?} collides with data from another file",
            if at.is_empty() {
                "/".to_string()
            } else {
                at.join("/")
            }
        ),
    )
}
