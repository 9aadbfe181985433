//! `vedette.runtime`: the decision gate, the intent parser and evidence records.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::buffer::{borrow_bytes, worth_detaching, DETACH_ABOVE_BYTES};
use super::errors;
use super::policy::{json_to_python, ArgsValidator, PolicyEngine};
use super::quota::QuotaTable;
use crate::gate::{self as core, DecisionFacts, IntentLimits, OutcomeFacts};

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Gate>()?;
    module.add_class::<ReleasePlan>()?;
    module.add_class::<Verdict>()?;
    module.add_class::<DecisionMetrics>()?;
    module.add("LATENCY_BUCKETS", core::LATENCY_BUCKETS.to_vec())?;
    module.add_function(wrap_pyfunction!(parse_intent, module)?)?;
    module.add_function(wrap_pyfunction!(is_name, module)?)?;
    module.add_function(wrap_pyfunction!(event_record, module)?)?;
    module.add_function(wrap_pyfunction!(evidence_timestamp, module)?)?;
    module.add("NAME_RULE", crate::policy::NAME_RULE)?;
    module.add("DETACH_ABOVE_BYTES", DETACH_ABOVE_BYTES)?;
    let outcomes: Vec<&str> = core::Outcome::ALL.iter().map(|o| o.name()).collect();
    module.add(
        "DECISION_OUTCOMES",
        pyo3::types::PyTuple::new(module.py(), outcomes)?,
    )?;
    Ok(())
}

/// The one rule for agent and tool names (`rust/policy/manifest.rs`).
#[pyfunction]
fn is_name(name: &str) -> bool {
    crate::policy::is_name(name)
}

/// An evidence record made outside a gate (release lifecycle events): the
/// same header and encoding as [`Gate::event_record`] (`rust/gate/record.rs`).
#[pyfunction]
fn event_record<'py>(
    py: Python<'py>,
    node_id: &str,
    kind: &str,
    fields_json: &Bound<'_, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let serde_json::Value::Object(fields) = json_arg(fields_json)? else {
        return Err(errors::invalid_value("event fields must be a JSON object"));
    };
    let writer = core::RecordWriter::new(node_id, Vec::new());
    let record = writer.event(kind, &fields, core::now_unix_ns());
    Ok(PyBytes::new(py, &record))
}

/// A moment (nanoseconds since the epoch) as evidence records write it.
#[pyfunction]
fn evidence_timestamp(unix_ns: i128) -> String {
    core::timestamp(unix_ns)
}

fn limits(max_depth: usize, max_args_bytes: usize, max_claims_bytes: usize) -> IntentLimits {
    IntentLimits {
        max_depth,
        max_args_bytes,
        max_claims_bytes,
    }
}

type IntentTuple<'py> = (String, Bound<'py, PyAny>, Bound<'py, PyAny>, Option<String>);

/// `(tool, args, claims, request_id)` of a request body; InvalidIntent says what is wrong.
#[pyfunction]
fn parse_intent<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
    max_depth: usize,
    max_args_bytes: usize,
    max_claims_bytes: usize,
) -> PyResult<IntentTuple<'py>> {
    let bytes = borrow_bytes(body)?;
    let slice = bytes.as_slice();
    let limits = limits(max_depth, max_args_bytes, max_claims_bytes);
    let parsed = if worth_detaching(slice.len()) {
        py.detach(|| core::parse_intent(slice, &limits))
    } else {
        core::parse_intent(slice, &limits)
    };
    let intent = parsed?;
    Ok((
        intent.tool,
        object_to_python(py, &intent.args)?,
        object_to_python(py, &intent.claims)?,
        intent.request_id,
    ))
}

fn object_to_python<'py>(
    py: Python<'py>,
    members: &serde_json::Map<String, serde_json::Value>,
) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for (name, item) in members {
        dict.set_item(name, json_to_python(py, item)?)?;
    }
    Ok(dict.into_any())
}

fn json_arg(json: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let bytes = borrow_bytes(json)?;
    serde_json::from_slice(bytes.as_slice())
        .map_err(|err| errors::invalid_value(format!("not JSON: {err}")))
}

/// What is active for one agent, compiled for deciding; see `rust/gate/decide.rs`.
#[pyclass(frozen, module = "vedette._core", name = "ReleasePlan")]
pub struct ReleasePlan(core::ReleasePlan);

#[pymethods]
impl ReleasePlan {
    /// `validators` maps every declared tool to its argument schema;
    /// `description_json` is the release as records name it.
    #[new]
    fn new(
        agent: &str,
        engine: &PolicyEngine,
        validators: HashMap<String, PyRef<'_, ArgsValidator>>,
        tool_names: Vec<String>,
        behavioral_fingerprint: &str,
        description_json: &Bound<'_, PyAny>,
    ) -> PyResult<ReleasePlan> {
        let description = json_arg(description_json)?;
        let validators = validators
            .into_iter()
            .map(|(name, validator)| (name, Arc::clone(&validator.0)))
            .collect();
        Ok(ReleasePlan(core::ReleasePlan::new(
            agent,
            Arc::clone(&engine.0),
            validators,
            &tool_names,
            behavioral_fingerprint,
            description,
        )))
    }

    #[getter]
    fn agent(&self) -> &str {
        self.0.agent()
    }
}

/// The node-wide decision gate; see `rust/gate/decide.rs`.
#[pyclass(frozen, module = "vedette._core", name = "Gate")]
pub struct Gate(core::Gate);

#[pymethods]
impl Gate {
    #[new]
    #[pyo3(signature = (*, node_id, mask_args, max_depth, max_args_bytes, max_claims_bytes, quotas, tools))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        node_id: &str,
        mask_args: Vec<String>,
        max_depth: usize,
        max_args_bytes: usize,
        max_claims_bytes: usize,
        quotas: &QuotaTable,
        tools: Vec<String>,
    ) -> Gate {
        Gate(core::Gate::new(
            limits(max_depth, max_args_bytes, max_claims_bytes),
            Arc::clone(&quotas.0),
            tools,
            core::RecordWriter::new(node_id, mask_args),
            core::DecisionIds::random(),
        ))
    }

    /// Parses, validates, checks the quota and declared tools, and evaluates
    /// `body` for `caller` of `agent`, without the GIL. `plan` is the agent's
    /// active release; when it is None, the call is denied with `unavailable`.
    #[pyo3(signature = (plan, caller, agent, body, unavailable = ""))]
    fn decide(
        &self,
        py: Python<'_>,
        plan: Option<&ReleasePlan>,
        caller: &str,
        agent: &str,
        body: &Bound<'_, PyAny>,
        unavailable: &str,
    ) -> PyResult<Verdict> {
        let bytes = borrow_bytes(body)?;
        let slice = bytes.as_slice();
        let release = match plan {
            Some(plan) if plan.0.agent() == agent => core::Release::Active(&plan.0),
            Some(_) => core::Release::Unavailable {
                agent,
                reason: "the release given is not this agent's; denied",
            },
            None => core::Release::Unavailable {
                agent,
                reason: unavailable,
            },
        };
        Ok(Verdict(py.detach(|| self.0.decide(release, caller, slice))))
    }

    /// Replaces the set of tools this node can run.
    fn set_tools(&self, tools: Vec<String>) {
        self.0.set_available_tools(tools);
    }

    /// A fresh decision id.
    fn next_id(&self) -> String {
        self.0.next_id()
    }

    /// Takes one token from `caller`'s rate quota: None when taken, else the
    /// seconds until one is there (for calls refused before `decide`).
    fn take_quota(&self, caller: &str) -> Option<f64> {
        match self.0.charge(caller) {
            Ok(()) => None,
            Err(refusal) => Some(refusal.retry_after_s.unwrap_or(1.0)),
        }
    }

    /// Any other evidence record: the common header (schema, `kind`,
    /// timestamp, node) and the members of `fields_json` (a JSON object).
    fn event_record<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        fields_json: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let serde_json::Value::Object(fields) = json_arg(fields_json)? else {
            return Err(errors::invalid_value("event fields must be a JSON object"));
        };
        let record = self.0.records().event(kind, &fields, core::now_unix_ns());
        Ok(PyBytes::new(py, &record))
    }

    /// A decision record for a call decided outside [`decide`]: no
    /// credentials, a body refused unread, an internal fault.
    #[pyo3(signature = (*, decision_id, outcome, reason, caller=None, agent=None, tool=None))]
    #[allow(clippy::too_many_arguments)]
    fn decision_record<'py>(
        &self,
        py: Python<'py>,
        decision_id: &str,
        outcome: &str,
        reason: Option<&str>,
        caller: Option<&str>,
        agent: Option<&str>,
        tool: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let outcome: core::Outcome = outcome.parse().map_err(errors::invalid_value)?;
        let facts = DecisionFacts {
            decision_id,
            outcome,
            reason,
            caller,
            agent,
            tool,
            ..DecisionFacts::default()
        };
        Ok(PyBytes::new(
            py,
            &self.0.records().decision(&facts, core::now_unix_ns()),
        ))
    }

    /// The record of a tool's run: `status` "ok" with the output's digest and
    /// size, or "error" with `error_type` and `error_message`.
    #[pyo3(signature = (*, decision_id, tool, status, duration_ms, output_digest=None,
                        output_bytes=None, error_type=None, error_message=None))]
    #[allow(clippy::too_many_arguments)]
    fn outcome_record<'py>(
        &self,
        py: Python<'py>,
        decision_id: &str,
        tool: &str,
        status: &str,
        duration_ms: f64,
        output_digest: Option<&str>,
        output_bytes: Option<u64>,
        error_type: Option<&str>,
        error_message: Option<&str>,
    ) -> Bound<'py, PyBytes> {
        let facts = OutcomeFacts {
            decision_id,
            tool,
            status,
            output_digest,
            output_bytes,
            error: error_type.map(|kind| (kind, error_message.unwrap_or(""))),
            duration_ms,
        };
        PyBytes::new(
            py,
            &self.0.records().tool_outcome(&facts, core::now_unix_ns()),
        )
    }
}

/// One call's verdict; see `rust/gate/decide.rs`.
#[pyclass(frozen, module = "vedette._core", name = "Verdict")]
pub struct Verdict(core::Verdict);

#[pymethods]
impl Verdict {
    /// One of `DECISION_OUTCOMES`.
    #[getter]
    fn outcome(&self) -> &'static str {
        self.0.outcome.name()
    }

    #[getter]
    fn allowed(&self) -> bool {
        self.0.outcome == core::Outcome::Allow
    }

    #[getter]
    fn decision_id(&self) -> &str {
        &self.0.decision_id
    }

    #[getter]
    fn reason(&self) -> &str {
        &self.0.reason
    }

    #[getter]
    fn retry_after_s(&self) -> Option<f64> {
        self.0.retry_after_s
    }

    /// The intent's `request_id`, when the body parsed and had one.
    #[getter]
    fn request_id(&self) -> Option<&str> {
        self.0
            .intent
            .as_ref()
            .and_then(|intent| intent.request_id.as_deref())
    }

    /// The intent's tool, when the body parsed.
    #[getter]
    fn tool(&self) -> Option<&str> {
        self.0.intent.as_ref().map(|intent| intent.tool.as_str())
    }

    /// The decision record to make durable.
    #[getter]
    fn record<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.record)
    }

    /// The intent's arguments as a new dict (None when the body did not parse).
    fn args<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.0
            .intent
            .as_ref()
            .map(|intent| object_to_python(py, &intent.args))
            .transpose()
    }
}

/// Decision counts and latency; see `rust/gate/metrics.rs`.
#[pyclass(frozen, module = "vedette._core", name = "DecisionMetrics")]
#[derive(Default)]
pub struct DecisionMetrics(core::DecisionMetrics);

#[pymethods]
impl DecisionMetrics {
    #[new]
    fn new() -> DecisionMetrics {
        DecisionMetrics::default()
    }

    /// Counts one decision and its latency in seconds.
    fn record(&self, outcome: &str, tool: &str, agent: &str, seconds: f64) {
        self.0.record(outcome, tool, agent, seconds);
    }

    /// `[(outcome, tool, agent, count), ...]`
    fn counts(&self) -> Vec<(String, String, String, u64)> {
        self.0
            .counts()
            .into_iter()
            .map(|c| (c.outcome, c.tool, c.agent, c.count))
            .collect()
    }

    /// `(cumulative counts per bucket of LATENCY_BUCKETS then +Inf, count, sum in seconds)`
    fn latency(&self) -> (Vec<u64>, u64, f64) {
        let snapshot = self.0.latency();
        (snapshot.cumulative, snapshot.count, snapshot.sum_seconds)
    }
}
