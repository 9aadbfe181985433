//! Why a bundle was refused: the file (if any) and the rule it broke.

use std::fmt;

/// The bundle rules of `docs/contracts.md`, each with a short stable name
/// that appears in every error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleRule {
    /// The bundle could not be read at all (not gzip, not tar, I/O error).
    Unreadable,
    /// A size bound of [`super::BundleLimits`] was crossed.
    SizeLimit,
    /// More entries than [`super::BundleLimits::max_entries`].
    EntryLimit,
    /// A path that is absolute, climbs out with `..`, or is otherwise malformed.
    PathForm,
    /// A symlink, hard link, device, FIFO or other non-regular entry.
    EntryType,
    /// The same path twice.
    DuplicatePath,
    /// A malformed `.manifest`.
    Manifest,
    /// A data file that is not valid JSON/YAML or cannot be mounted.
    Data,
    /// Data or a package outside the manifest's `roots`.
    Roots,
    /// A Rego module that does not parse or compile.
    Rego,
    /// No `data.vedette.decision` rule.
    EntryPoint,
}

impl BundleRule {
    /// The rule's short stable name (`size-limit`, `entry-point`, …), as error messages quote it.
    pub const fn name(self) -> &'static str {
        match self {
            BundleRule::Unreadable => "unreadable",
            BundleRule::SizeLimit => "size-limit",
            BundleRule::EntryLimit => "entry-limit",
            BundleRule::PathForm => "path-form",
            BundleRule::EntryType => "entry-type",
            BundleRule::DuplicatePath => "duplicate-path",
            BundleRule::Manifest => "manifest",
            BundleRule::Data => "data",
            BundleRule::Roots => "roots",
            BundleRule::Rego => "rego",
            BundleRule::EntryPoint => "entry-point",
        }
    }
}

impl fmt::Display for BundleRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused bundle. The message reads
/// `bundle file 'a/data.json' breaks rule 'data': <detail>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct BundleError {
    /// The file inside the bundle, when one file is at fault.
    pub file: Option<String>,
    /// The rule the bundle broke.
    pub rule: BundleRule,
    /// What exactly is wrong, in words for the operator.
    pub detail: String,
}

impl BundleError {
    pub(crate) fn new(rule: BundleRule, detail: impl Into<String>) -> BundleError {
        BundleError {
            file: None,
            rule,
            detail: detail.into(),
        }
    }

    pub(crate) fn at(
        file: impl Into<String>,
        rule: BundleRule,
        detail: impl Into<String>,
    ) -> BundleError {
        BundleError {
            file: Some(file.into()),
            rule,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(
                f,
                "bundle file {file:?} breaks rule '{}': {}",
                self.rule, self.detail
            ),
            None => write!(f, "bundle breaks rule '{}': {}", self.rule, self.detail),
        }
    }
}
