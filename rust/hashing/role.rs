use std::fmt;

use super::digest::{Algorithm, Digest};

/// What a digest is used for. Each role fixes the algorithm it may be written
/// in (INV-16), so a SHA-256 value can never be accepted where a BLAKE3
/// segment id is expected, or the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashRole {
    /// BLAKE3 of the RFC 8785 canonical JSON of an agent manifest's behaviour section.
    BehavioralFingerprint,
    /// BLAKE3 of a sealed segment's bytes.
    SegmentId,
    /// SHA-256 of an OCI manifest or blob (agent, policy and release digests).
    OciDigest,
    /// SHA-256 of a policy bundle's canonical file listing.
    PolicyHash,
    /// A digest of caller-supplied bytes: either algorithm.
    PayloadDigest,
}

impl HashRole {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [HashRole; 5] = [
        HashRole::BehavioralFingerprint,
        HashRole::SegmentId,
        HashRole::OciDigest,
        HashRole::PolicyHash,
        HashRole::PayloadDigest,
    ];

    /// The role's name, as Python and error messages spell it (`segment_id`, …).
    pub const fn name(self) -> &'static str {
        match self {
            HashRole::BehavioralFingerprint => "behavioral_fingerprint",
            HashRole::SegmentId => "segment_id",
            HashRole::OciDigest => "oci_digest",
            HashRole::PolicyHash => "policy_hash",
            HashRole::PayloadDigest => "payload_digest",
        }
    }

    /// Looks a role up by its exact name; `None` for any other text.
    pub fn from_name(name: &str) -> Option<HashRole> {
        HashRole::ALL.into_iter().find(|role| role.name() == name)
    }

    /// The algorithms a digest in this role may use.
    pub const fn allowed(self) -> &'static [Algorithm] {
        match self {
            HashRole::BehavioralFingerprint | HashRole::SegmentId => &[Algorithm::Blake3],
            HashRole::OciDigest | HashRole::PolicyHash => &[Algorithm::Sha256],
            HashRole::PayloadDigest => &[Algorithm::Blake3, Algorithm::Sha256],
        }
    }

    /// Whether a digest in `algorithm` may fill this role.
    pub fn accepts(self, algorithm: Algorithm) -> bool {
        self.allowed().contains(&algorithm)
    }
}

impl fmt::Display for HashRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest offered for a role whose algorithm it does not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} must be {expected}, got a {given} digest ({digest})", expected = expected_names(*.role))]
pub struct HashRoleError {
    /// The role the digest was offered for.
    pub role: HashRole,
    /// The algorithm the digest is in, which the role does not allow.
    pub given: Algorithm,
    /// The digest refused, in its text form.
    pub digest: String,
}

fn expected_names(role: HashRole) -> String {
    role.allowed()
        .iter()
        .map(|algorithm| algorithm.name())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl HashRoleError {
    /// The algorithm(s) the role requires, e.g. `blake3`.
    pub fn expected(&self) -> String {
        expected_names(self.role)
    }
}

/// Enforces the hash roles (INV-16): every digest that crosses a boundary
/// (a release document, a peer frame, a segment name) passes through here.
pub fn require_role(digest: &Digest, role: HashRole) -> Result<(), HashRoleError> {
    if role.accepts(digest.algorithm()) {
        Ok(())
    } else {
        Err(HashRoleError {
            role,
            given: digest.algorithm(),
            digest: digest.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algorithm: Algorithm) -> Digest {
        Digest::new(algorithm, [7; 32])
    }

    #[test]
    fn roles_accept_only_their_algorithm() {
        let blake = digest(Algorithm::Blake3);
        let sha = digest(Algorithm::Sha256);
        for role in [HashRole::BehavioralFingerprint, HashRole::SegmentId] {
            assert!(require_role(&blake, role).is_ok());
            assert!(require_role(&sha, role).is_err());
        }
        for role in [HashRole::OciDigest, HashRole::PolicyHash] {
            assert!(require_role(&sha, role).is_ok());
            assert!(require_role(&blake, role).is_err());
        }
        assert!(require_role(&sha, HashRole::PayloadDigest).is_ok());
        assert!(require_role(&blake, HashRole::PayloadDigest).is_ok());
    }

    #[test]
    fn error_names_role_expected_and_given() {
        let err = require_role(&digest(Algorithm::Sha256), HashRole::SegmentId).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("segment_id must be blake3, got a sha256 digest (sha256:0707"));
        assert_eq!(err.expected(), "blake3");
    }

    #[test]
    fn names_round_trip() {
        for role in HashRole::ALL {
            assert_eq!(HashRole::from_name(role.name()), Some(role));
        }
        assert_eq!(HashRole::from_name("segment"), None);
    }
}
