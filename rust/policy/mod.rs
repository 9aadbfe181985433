//! Policy: OPA bundles, Rego evaluated by `regorus`, and agent manifests.
//!
//! - [`Bundle`] reads an OPA-format bundle (directory or `.tar.gz`) within
//!   [`BundleLimits`], honouring `roots` and `rego_version`;
//! - [`policy_hash`] is SHA-256 over its canonical file listing;
//! - [`PolicyEngine`] compiles a bundle once and evaluates
//!   `data.vedette.decision`, denying on every fault;
//! - [`AgentManifest`] validates an agent manifest and computes its
//!   behavioral fingerprint;
//! - [`ArgsValidator`] checks a call's arguments against its tool's JSON Schema.
//!
//! The rules are written down in `docs/contracts.md`.

mod archive;
mod args;
mod bundle;
mod engine;
mod error;
mod hash;
mod limits;
mod manifest;

pub use archive::{normalize_path, BundleFiles};
pub use args::ArgsValidator;
pub use bundle::{Bundle, BundleManifest, RegoModule, RegoVersion};
pub use engine::{object, Decision, EngineReuse, Fault, PolicyEngine, ENTRY_POINT};
pub use error::{BundleError, BundleRule};
pub use hash::{canonical_listing, policy_hash};
pub use limits::{BundleLimits, EvalLimits, MAX_AGENT_MANIFEST_BYTES};
pub use manifest::{
    is_name, AgentManifest, ManifestError, ToolDeclaration, AGENT_SCHEMA, BEHAVIOUR_FIELDS,
    MAX_NAME_LEN, NAME_RULE,
};
pub use regorus::Value;

#[cfg(test)]
mod tests;
