//! Evidence records: one JSON document per decision and one per tool outcome.
//!
//! Field names follow OPA's decision logs (`decision_id`, `timestamp`,
//! `input`, `result`, release data) so existing decision-log tooling can read
//! them. Argument and claim values whose member name is in the mask list are
//! written as `"***"` at any depth. The layout is in `docs/contracts.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::decide::Outcome;
use super::mask::{Mask, MASK};
use crate::policy::{Decision, Value as RegoValue};

/// The `schema` member of every evidence record.
pub const SCHEMA: &str = "vedette.evidence/v1";

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as i128)
}

/// RFC 3339 in UTC with nanoseconds: `2026-11-26T03:14:09.123456789Z`.
pub fn timestamp(unix_ns: i128) -> String {
    let moment = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        moment.year(),
        u8::from(moment.month()),
        moment.day(),
        moment.hour(),
        moment.minute(),
        moment.second(),
        moment.nanosecond()
    )
}

/// Decision ids in UUID form: 64 random bits per process, then a counter.
/// Unique across restarts (the random half) and within a process (the counter).
pub struct DecisionIds {
    prefix: u64,
    counter: AtomicU64,
}

impl DecisionIds {
    /// Ids that start with `prefix` (the first 64 bits of every id) and count up from 1.
    pub fn new(prefix: u64) -> DecisionIds {
        DecisionIds {
            prefix,
            counter: AtomicU64::new(1),
        }
    }

    /// A prefix from the operating system's random source.
    pub fn random() -> DecisionIds {
        let mut bytes = [0u8; 8];
        // Should the system source fail, the clock still separates restarts.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            bytes = (now_unix_ns() as u64).to_be_bytes();
        }
        DecisionIds::new(u64::from_be_bytes(bytes))
    }

    /// The next id: the prefix and the counter as 32 hex digits in the 8-4-4-4-12 form of a UUID.
    pub fn next_id(&self) -> String {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let text = format!("{:016x}{count:016x}", self.prefix);
        format!(
            "{}-{}-{}-{}-{}",
            &text[..8],
            &text[8..12],
            &text[12..16],
            &text[16..20],
            &text[20..]
        )
    }
}

/// What a decision record says; `None` fields are written as `null`.
#[derive(Default)]
pub struct DecisionFacts<'a> {
    /// The call's decision id.
    pub decision_id: &'a str,
    /// How the call was decided.
    pub outcome: Outcome,
    /// Why, as the caller was told.
    pub reason: Option<&'a str>,
    /// The caller the runtime established; `None` when unauthenticated.
    pub caller: Option<&'a str>,
    /// The caller's agent; `None` when unauthenticated.
    pub agent: Option<&'a str>,
    /// The tool the intent names; `None` when the body did not parse.
    pub tool: Option<&'a str>,
    /// The intent's `request_id`, if it gave one.
    pub request_id: Option<&'a str>,
    /// The intent's arguments, written with masked values as `***`.
    pub args: Option<&'a Map<String, Value>>,
    /// The intent's claims, written with masked values as `***`.
    pub claims: Option<&'a Map<String, Value>>,
    /// The release as `/v1/status` describes it.
    pub release: Option<&'a Value>,
    /// The policy's verdict: `allow`, `reason`, `fault` and the decision
    /// object the policy produced.
    pub result: Option<&'a Decision>,
}

/// What a tool-outcome record says.
pub struct OutcomeFacts<'a> {
    /// The decision id of the allowed call whose tool ran.
    pub decision_id: &'a str,
    /// The tool that ran.
    pub tool: &'a str,
    /// How the run ended: `ok` or `error` (then `error` says why).
    pub status: &'a str,
    /// The digest of the output's compact JSON, as the answer states it; `None` when the tool
    /// failed.
    pub output_digest: Option<&'a str>,
    /// Length of the output's compact JSON, in bytes.
    pub output_bytes: Option<u64>,
    /// `(type, message)` of a failed run.
    pub error: Option<(&'a str, &'a str)>,
    /// How long the tool ran, in milliseconds; written rounded to the microsecond.
    pub duration_ms: f64,
}

/// Builds record bytes for one node; the store makes them durable.
pub struct RecordWriter {
    node_id: String,
    mask: Mask,
}

impl RecordWriter {
    /// A writer for the node `node_id` that masks the values of the argument and claim names in
    /// `mask` (`evidence.mask_args`).
    pub fn new(node_id: &str, mask: impl IntoIterator<Item = String>) -> RecordWriter {
        RecordWriter {
            node_id: node_id.to_string(),
            mask: Mask::new(mask),
        }
    }

    /// The node id every record names in its `node` member.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The names whose values are masked.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// The `decision` record of one call at `unix_ns` (nanoseconds since the Unix epoch), as
    /// compact JSON.
    pub fn decision(&self, facts: &DecisionFacts<'_>, unix_ns: i128) -> Vec<u8> {
        let record = DecisionRecord {
            schema: SCHEMA,
            kind: "decision",
            decision_id: facts.decision_id,
            timestamp: timestamp(unix_ns),
            node: &self.node_id,
            caller: facts.caller,
            agent: facts.agent,
            tool: facts.tool,
            request_id: facts.request_id,
            input: Input {
                args: facts.args.map(|args| Masked(args, &self.mask)),
                claims: facts.claims.map(|claims| Masked(claims, &self.mask)),
            },
            release: facts.release,
            result: facts.result.map(ResultField),
            outcome: facts.outcome.name(),
            reason: facts.reason,
        };
        encode(&record)
    }

    /// The `tool_outcome` record of one tool run, finished at `unix_ns` (nanoseconds since the Unix
    /// epoch), as compact JSON.
    pub fn tool_outcome(&self, facts: &OutcomeFacts<'_>, unix_ns: i128) -> Vec<u8> {
        let record = OutcomeRecord {
            schema: SCHEMA,
            kind: "tool_outcome",
            decision_id: facts.decision_id,
            timestamp: timestamp(unix_ns),
            node: &self.node_id,
            tool: facts.tool,
            status: facts.status,
            output_digest: facts.output_digest,
            output_bytes: facts.output_bytes,
            error: facts
                .error
                .map(|(kind, message)| ToolError { kind, message }),
            duration_ms: (facts.duration_ms * 1000.0).round() / 1000.0,
        };
        encode(&record)
    }
}

impl RecordWriter {
    /// Any other evidence record (`store_event`, `refusal_summary`, `release_event`, …):
    /// the common header, then `fields` (by name). A field may not
    /// replace the header (`schema`, `kind`, `timestamp`, `node`); one that
    /// tries is left out.
    pub fn event(&self, kind: &str, fields: &Map<String, Value>, unix_ns: i128) -> Vec<u8> {
        let record = EventRecord {
            schema: SCHEMA,
            kind,
            timestamp: timestamp(unix_ns),
            node: &self.node_id,
            fields,
        };
        encode(&record)
    }
}

const HEADER_FIELDS: [&str; 4] = ["schema", "kind", "timestamp", "node"];

struct EventRecord<'a> {
    schema: &'static str,
    kind: &'a str,
    timestamp: String,
    node: &'a str,
    fields: &'a Map<String, Value>,
}

impl Serialize for EventRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("schema", self.schema)?;
        map.serialize_entry("kind", self.kind)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        map.serialize_entry("node", self.node)?;
        for (name, value) in self.fields {
            if !HEADER_FIELDS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

fn encode(record: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    // Every field is a string, number, bool, null or a JSON value with string
    // keys: serialization cannot fail; should it, the record still says so.
    if serde_json::to_writer(&mut out, record).is_err() {
        out.clear();
        out.extend_from_slice(br#"{"schema":"vedette.evidence/v1","kind":"unencodable"}"#);
    }
    out
}

#[derive(Serialize)]
struct DecisionRecord<'a> {
    schema: &'static str,
    kind: &'static str,
    decision_id: &'a str,
    timestamp: String,
    node: &'a str,
    caller: Option<&'a str>,
    agent: Option<&'a str>,
    tool: Option<&'a str>,
    request_id: Option<&'a str>,
    input: Input<'a>,
    release: Option<&'a Value>,
    result: Option<ResultField<'a>>,
    outcome: &'a str,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Input<'a> {
    args: Option<Masked<'a>>,
    claims: Option<Masked<'a>>,
}

#[derive(Serialize)]
struct OutcomeRecord<'a> {
    schema: &'static str,
    kind: &'static str,
    decision_id: &'a str,
    timestamp: String,
    node: &'a str,
    tool: &'a str,
    status: &'a str,
    output_digest: Option<&'a str>,
    output_bytes: Option<u64>,
    error: Option<ToolError<'a>>,
    duration_ms: f64,
}

#[derive(Serialize)]
struct ToolError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// An object written with masked member values replaced, without copying it.
struct Masked<'a>(&'a Map<String, Value>, &'a Mask);

impl Serialize for Masked<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Masked(members, mask) = *self;
        if mask.is_empty() {
            return members.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(members.len()))?;
        for (name, value) in members {
            if mask.matches(name) {
                map.serialize_entry(name, MASK)?;
            } else {
                map.serialize_entry(name, &MaskedValue(value, mask))?;
            }
        }
        map.end()
    }
}

struct MaskedValue<'a>(&'a Value, &'a Mask);

impl Serialize for MaskedValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(members) => Masked(members, self.1).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&MaskedValue(item, self.1))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

struct ResultField<'a>(&'a Decision);

impl Serialize for ResultField<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let decision = self.0;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("allow", &decision.allow)?;
        map.serialize_entry("reason", &decision.reason)?;
        map.serialize_entry("fault", &decision.fault.map(|fault| fault.name()))?;
        map.serialize_entry("result", &Defined(&decision.result))?;
        map.end()
    }
}

/// A Rego value, with `undefined` written as `null`.
struct Defined<'a>(&'a RegoValue);

impl Serialize for Defined<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            RegoValue::Undefined => serializer.serialize_unit(),
            value => value.serialize(serializer),
        }
    }
}
