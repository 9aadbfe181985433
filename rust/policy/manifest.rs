//! The agent manifest and its behavioral fingerprint.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::bundle::parse_strict_json;
use super::limits::MAX_AGENT_MANIFEST_BYTES;
use crate::hashing::{blake3, canonical_json, require_role, Digest, HashRole};

/// The value of the manifest's `schema` field this version reads.
pub const AGENT_SCHEMA: &str = "vedette.agent/v1";

/// The fields of the behaviour section: everything that changes what the
/// agent can do. `name`, `version`, `description` and `metadata` are left
/// out, so relabelling an agent does not change its fingerprint.
pub const BEHAVIOUR_FIELDS: [&str; 5] = ["schema", "model", "tools", "prompts", "config"];
const TOP_LEVEL_FIELDS: [&str; 9] = [
    "schema",
    "name",
    "version",
    "description",
    "model",
    "tools",
    "prompts",
    "config",
    "metadata",
];
/// Longest name ([`is_name`]) and longest manifest label (version, model provider and name), in
/// bytes.
pub const MAX_NAME_LEN: usize = 128;
const MAX_TOOLS: usize = 1024;

/// A manifest that breaks the schema. `at` is a JSON path (`tools[2].name`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent manifest {at}: {detail}")]
pub struct ManifestError {
    /// JSON path of the offending value (`$` for the whole document, `tools[2].name`).
    pub at: String,
    /// What is wrong with it, in words for the operator.
    pub detail: String,
}

fn fail<T>(at: impl Into<String>, detail: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError {
        at: at.into(),
        detail: detail.into(),
    })
}

/// A tool the agent declares.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDeclaration {
    /// The tool's name, by the rule of [`is_name`]; unique within the manifest.
    pub name: String,
    /// What the tool does, in words (what a model reads); part of the behaviour section, so a
    /// change changes the fingerprint.
    pub description: String,
    /// The JSON Schema of the tool's arguments.
    pub args_schema: Map<String, Value>,
}

/// A validated agent manifest.
#[derive(Clone, Debug)]
pub struct AgentManifest {
    /// The agent's name, by the rule of [`is_name`].
    pub name: String,
    /// The agent's version label (non-blank, at most [`MAX_NAME_LEN`] bytes); not part of the
    /// fingerprint.
    pub version: String,
    /// Free text about the agent; not part of the fingerprint.
    pub description: Option<String>,
    /// The model the agent runs: `provider` and `name`, optionally `version` and `parameters`.
    pub model: Map<String, Value>,
    /// Every tool the agent may call, in manifest order; a call to any other is denied.
    pub tools: Vec<ToolDeclaration>,
    /// Name → digest of each prompt, by content.
    pub prompts: Vec<(String, Digest)>,
    /// Name → digest of each configuration file, by content.
    pub config: Vec<(String, Digest)>,
    behaviour: Value,
    fingerprint: Digest,
}

impl AgentManifest {
    /// Enforces the agent manifest schema of `docs/contracts.md`: unknown
    /// fields, duplicate keys, missing or mistyped fields and duplicate tool
    /// names are refused with the JSON path of the offending value.
    pub fn parse(bytes: &[u8]) -> Result<AgentManifest, ManifestError> {
        if bytes.len() > MAX_AGENT_MANIFEST_BYTES {
            return fail(
                "$",
                format!(
                    "is {} bytes, over the {MAX_AGENT_MANIFEST_BYTES}-byte bound",
                    bytes.len()
                ),
            );
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail("$", "is not valid UTF-8");
        };
        let value = match parse_strict_json(text) {
            Ok(value) => value,
            Err(err) => return fail("$", format!("is not valid JSON: {err}")),
        };
        AgentManifest::from_value(value)
    }

    /// Checks an already parsed JSON value against the schema, as [`AgentManifest::parse`] does
    /// after reading the bytes.
    pub fn from_value(value: Value) -> Result<AgentManifest, ManifestError> {
        let Value::Object(fields) = value else {
            return fail("$", "must be a JSON object");
        };
        for key in fields.keys() {
            if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
                return fail(
                    key.as_str(),
                    format!(
                        "unknown field: expected {} (an unknown field could change behaviour \
                         without changing the fingerprint)",
                        TOP_LEVEL_FIELDS.join(", ")
                    ),
                );
            }
        }
        match fields.get("schema") {
            Some(Value::String(schema)) if schema == AGENT_SCHEMA => {}
            Some(other) => return fail("schema", format!("must be {AGENT_SCHEMA:?}, got {other}")),
            None => {
                return fail(
                    "schema",
                    format!("is required and must be {AGENT_SCHEMA:?}"),
                )
            }
        }
        let name = identifier(&fields, "name", "name")?;
        let version = required_string(&fields, "version", "version")?;
        let description = match fields.get("description") {
            None => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => return fail("description", "must be a string"),
        };
        if let Some(metadata) = fields.get("metadata") {
            if !metadata.is_object() {
                return fail("metadata", "must be an object");
            }
        }
        let model = match fields.get("model") {
            Some(Value::Object(model)) => model.clone(),
            Some(_) => return fail("model", "must be an object with 'provider' and 'name'"),
            None => return fail("model", "is required: an object with 'provider' and 'name'"),
        };
        for key in model.keys() {
            if !["provider", "name", "version", "parameters"].contains(&key.as_str()) {
                return fail(
                    format!("model.{key}"),
                    "unknown field: expected provider, name, version, parameters",
                );
            }
        }
        required_string(&model, "provider", "model.provider")?;
        required_string(&model, "name", "model.name")?;
        if let Some(version) = model.get("version") {
            if !version.is_string() {
                return fail("model.version", "must be a string");
            }
        }
        if let Some(parameters) = model.get("parameters") {
            if !parameters.is_object() {
                return fail("model.parameters", "must be an object");
            }
        }
        let tools = parse_tools(fields.get("tools"))?;
        let prompts = parse_digests(&fields, "prompts")?;
        let config = parse_digests(&fields, "config")?;

        let mut behaviour = Map::new();
        for field in BEHAVIOUR_FIELDS {
            // An absent prompts/config map means the same as an empty one.
            let value = fields
                .get(field)
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            behaviour.insert(field.to_string(), value);
        }
        let behaviour = Value::Object(behaviour);
        let fingerprint = behavioral_fingerprint(&behaviour)?;
        Ok(AgentManifest {
            name,
            version,
            description,
            model,
            tools,
            prompts,
            config,
            behaviour,
            fingerprint,
        })
    }

    /// The behaviour section: the fields of [`BEHAVIOUR_FIELDS`].
    pub fn behaviour(&self) -> &Value {
        &self.behaviour
    }

    /// BLAKE3 over the RFC 8785 canonical JSON of [`Self::behaviour`].
    pub fn behavioral_fingerprint(&self) -> Digest {
        self.fingerprint
    }

    /// Whether the manifest declares a tool called `name` (exact match).
    pub fn declares_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|tool| tool.name == name)
    }
}

/// Enforces the behavioral-fingerprint role (INV-16): BLAKE3 over the
/// canonical JSON, checked against [`HashRole::BehavioralFingerprint`].
fn behavioral_fingerprint(behaviour: &Value) -> Result<Digest, ManifestError> {
    let canonical = match canonical_json(behaviour) {
        Ok(canonical) => canonical,
        Err(err) => return fail("$", format!("has no canonical JSON form: {err}")),
    };
    let digest = blake3(&canonical);
    if let Err(err) = require_role(&digest, HashRole::BehavioralFingerprint) {
        return fail("$", err.to_string());
    }
    Ok(digest)
}

fn required_string(
    fields: &Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<String, ManifestError> {
    match fields.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() && text.len() <= MAX_NAME_LEN => {
            Ok(text.clone())
        }
        Some(Value::String(_)) => fail(
            at,
            format!("must be a non-blank string of at most {MAX_NAME_LEN} bytes"),
        ),
        Some(_) => fail(at, "must be a string"),
        None => fail(at, "is required"),
    }
}

/// The one rule for agent and tool names, wherever a name is read (a
/// manifest, an intent, a tool registered on the node): an ASCII letter,
/// then ASCII letters, digits, `.`, `_`, `-`, at most [`MAX_NAME_LEN`] bytes.
pub fn is_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What [`is_name`] requires, for error messages.
pub const NAME_RULE: &str =
    "an ASCII letter, then ASCII letters, digits, '.', '_' or '-', at most 128 bytes";

fn identifier(fields: &Map<String, Value>, key: &str, at: &str) -> Result<String, ManifestError> {
    let name = required_string(fields, key, at)?;
    if !is_name(&name) {
        return fail(at, format!("{name:?} must be {NAME_RULE}"));
    }
    Ok(name)
}

fn parse_tools(value: Option<&Value>) -> Result<Vec<ToolDeclaration>, ManifestError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(_) => return fail("tools", "must be an array of tool declarations"),
        None => return fail("tools", "is required (an empty array declares no tools)"),
    };
    if items.len() > MAX_TOOLS {
        return fail("tools", format!("declares more than {MAX_TOOLS} tools"));
    }
    let mut names = BTreeSet::new();
    let mut tools = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = format!("tools[{index}]");
        let Value::Object(tool) = item else {
            return fail(at, "must be an object with name, description, args_schema");
        };
        for key in tool.keys() {
            if !["name", "description", "args_schema"].contains(&key.as_str()) {
                return fail(
                    format!("{at}.{key}"),
                    "unknown field: expected name, description, args_schema",
                );
            }
        }
        let name = identifier(tool, "name", &format!("{at}.name"))?;
        if !names.insert(name.clone()) {
            return fail(
                format!("{at}.name"),
                format!("tool {name:?} is declared twice"),
            );
        }
        let description = match tool.get("description") {
            Some(Value::String(text)) => text.clone(),
            Some(_) => return fail(format!("{at}.description"), "must be a string"),
            None => return fail(format!("{at}.description"), "is required"),
        };
        let args_schema = match tool.get("args_schema") {
            Some(Value::Object(schema)) => schema.clone(),
            Some(_) => {
                return fail(
                    format!("{at}.args_schema"),
                    "must be an object: the JSON Schema of the tool's arguments",
                )
            }
            None => {
                return fail(
                    format!("{at}.args_schema"),
                    "is required: the JSON Schema of the tool's arguments",
                )
            }
        };
        match args_schema.get("type") {
            None => {}
            Some(Value::String(kind)) if kind == "object" => {}
            Some(other) => {
                return fail(
                    format!("{at}.args_schema.type"),
                    format!("must be \"object\" (arguments are a JSON object), got {other}"),
                )
            }
        }
        tools.push(ToolDeclaration {
            name,
            description,
            args_schema,
        });
    }
    Ok(tools)
}

fn parse_digests(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Vec<(String, Digest)>, ManifestError> {
    let entries = match fields.get(key) {
        None => return Ok(Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return fail(key, "must be an object mapping names to digests"),
    };
    let mut digests = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let at = format!("{key}.{name}");
        let Value::String(text) = value else {
            return fail(
                at,
                "must be a digest string ('sha256:<hex>' or 'blake3:<hex>')",
            );
        };
        match Digest::parse(text) {
            Ok(digest) => digests.push((name.clone(), digest)),
            Err(err) => return fail(at, err.to_string()),
        }
    }
    Ok(digests)
}
