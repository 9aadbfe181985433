//! The policy hash: SHA-256 over a bundle's canonical file listing.

use super::archive::{BundleFiles, DATA_FILES, MANIFEST_FILE};
use super::bundle::parse_strict_json;
use super::error::{BundleError, BundleRule};
use crate::hashing::{canonical_json, require_role, sha256, Digest, HashRole};

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
    let mut listing = String::from(LISTING_HEADER);
    for (path, bytes) in files {
        let name = path.rsplit('/').next().unwrap_or(path);
        let digest = if path == MANIFEST_FILE || DATA_FILES.contains(&name) {
            sha256(&canonical_bytes(path, bytes)?)
        } else {
            sha256(bytes)
        };
        listing.push_str(&digest.hex());
        listing.push_str("  ");
        listing.push_str(path);
        listing.push('\n');
    }
    Ok(listing)
}

fn canonical_bytes(path: &str, bytes: &[u8]) -> Result<Vec<u8>, BundleError> {
    let rule = if path == MANIFEST_FILE {
        BundleRule::Manifest
    } else {
        BundleRule::Data
    };
    let fail = |detail: String| BundleError::at(path, rule, detail);
    let text = std::str::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    let value = if path.ends_with(".yaml") || path.ends_with(".yml") {
        let value = regorus::Value::from_yaml_str(text)
            .map_err(|err| fail(format!("not valid YAML: {err}")))?;
        let json = value
            .to_json_str()
            .map_err(|err| fail(format!("YAML value has no JSON form: {err}")))?;
        parse_strict_json(&json)
            .map_err(|err| fail(format!("YAML value has no JSON form: {err}")))?
    } else {
        parse_strict_json(text).map_err(|err| fail(format!("not valid JSON: {err}")))?
    };
    canonical_json(&value).map_err(|err| fail(format!("has no canonical JSON form: {err}")))
}

/// Enforces the policy-hash role (DESIGN §5): SHA-256 over
/// [`canonical_listing`], checked against [`HashRole::PolicyHash`].
pub fn policy_hash(files: &BundleFiles) -> Result<Digest, BundleError> {
    let digest = sha256(canonical_listing(files)?.as_bytes());
    require_role(&digest, HashRole::PolicyHash)
        .map_err(|err| BundleError::new(BundleRule::Unreadable, err.to_string()))?;
    Ok(digest)
}
