//! The policy hash: SHA-256 over a bundle's canonical file listing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::archive::{BundleFiles, DATA_FILES, MANIFEST_FILE};
use super::error::{BundleError, BundleRule};
use crate::hashing::{canonical_json_from_str, require_role, sha256, Digest, HashRole};

/// The first line of the listing; names the listing's format so a later
/// format can never produce the same hash for different content.
const LISTING_HEADER: &str = "vedette-policy-listing/v1\n";

/// The canonical file listing of a bundle: a header line, then one line per
/// file in byte order of its path, `<sha256 hex>  <path>` as `sha256sum`
/// writes it. JSON and YAML files (data files and `.manifest`) are hashed in
/// their RFC 8785 canonical JSON form, so whitespace, key order and the
/// choice of YAML spelling do not change the listing; every other file by
/// its bytes. Paths cannot contain a newline (the path-form rule refuses
/// control characters), so the listing is unambiguous.
pub fn canonical_listing(files: &BundleFiles) -> Result<String, BundleError> {
    let mut digests = BTreeMap::new();
    for (path, bytes) in files {
        digests.insert(path.as_str(), file_digest(path, bytes)?);
    }
    Ok(listing_of(&digests))
}

/// The SHA-256 a file contributes to the listing.
pub(crate) fn file_digest(path: &str, bytes: &[u8]) -> Result<Digest, BundleError> {
    if is_json_file(path) {
        Ok(sha256(&canonical_form(path, bytes)?.0))
    } else {
        Ok(sha256(bytes))
    }
}

/// Whether a bundle file is JSON or YAML, and so hashed in canonical form.
pub(crate) fn is_json_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path == MANIFEST_FILE || DATA_FILES.contains(&name)
}

/// The listing from each file's digest.
pub(crate) fn listing_of(digests: &BTreeMap<&str, Digest>) -> String {
    let mut listing = String::from(LISTING_HEADER);
    for (path, digest) in digests {
        listing.push_str(&digest.hex());
        listing.push_str("  ");
        listing.push_str(path);
        listing.push('\n');
    }
    listing
}

/// The canonical JSON bytes of a JSON or YAML bundle file and the value they
/// hold, parsed strictly (duplicate keys refused). The value is read back
/// from the canonical bytes, so what a policy sees is exactly what is hashed.
pub(crate) fn canonical_form(path: &str, bytes: &[u8]) -> Result<(Vec<u8>, Value), BundleError> {
    let rule = if path == MANIFEST_FILE {
        BundleRule::Manifest
    } else {
        BundleRule::Data
    };
    let fail = |detail: String| BundleError::at(path, rule, detail);
    let text = std::str::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    let canonical = if path.ends_with(".yaml") || path.ends_with(".yml") {
        let value = regorus::Value::from_yaml_str(text)
            .map_err(|err| fail(format!("not valid YAML: {err}")))?;
        let json = value
            .to_json_str()
            .map_err(|err| fail(format!("YAML value has no JSON form: {err}")))?;
        canonical_json_from_str(&json)
            .map_err(|err| fail(format!("YAML value has no canonical JSON form: {err}")))?
    } else {
        canonical_json_from_str(text).map_err(|err| fail(format!("not valid JSON: {err}")))?
    };
    let value = serde_json::from_slice(&canonical)
        .map_err(|err| fail(format!("canonical form does not parse back: {err}")))?;
    Ok((canonical, value))
}

/// Enforces the policy-hash role (INV-16): SHA-256 over
/// [`canonical_listing`], checked against [`HashRole::PolicyHash`].
pub fn policy_hash(files: &BundleFiles) -> Result<Digest, BundleError> {
    let mut digests = BTreeMap::new();
    for (path, bytes) in files {
        digests.insert(path.as_str(), file_digest(path, bytes)?);
    }
    policy_hash_of(&digests)
}

pub(crate) fn policy_hash_of(digests: &BTreeMap<&str, Digest>) -> Result<Digest, BundleError> {
    let digest = sha256(listing_of(digests).as_bytes());
    require_role(&digest, HashRole::PolicyHash)
        .map_err(|err| BundleError::new(BundleRule::Unreadable, err.to_string()))?;
    Ok(digest)
}
