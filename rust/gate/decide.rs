//! One intent from body bytes to a verdict and its evidence record, in one call.
//!
//! The order is the runtime's: read the intent (shape, size) → the caller's
//! rate quota (every request counts, malformed ones too) → the tool's argument
//! schema → the declared-tool check → the policy. Authentication happens before (the caller is given),
//! and making the record durable, running the tool and recording its outcome
//! after, in the runtime. Every step that refuses ends the call with a deny
//! and the record that says why; nothing here can produce an allow except a
//! policy decision that allows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::intent::{parse_intent, py_repr, Intent, IntentLimits};
use super::mask::{scrub, MASK};
use super::record::{now_unix_ns, timestamp, DecisionFacts, DecisionIds, RecordWriter};
use crate::policy::{object, ArgsValidator, Decision, PolicyEngine, Value as RegoValue};
use crate::quota::QuotaTable;

/// How a call was decided, as its evidence record says: the one vocabulary
/// (`vedette._core.DECISION_OUTCOMES`; the runtime's answers add `tool_error`,
/// an allowed call whose tool failed, which its outcome record tells).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// The policy allowed: the record must be durable before the tool runs.
    Allow,
    /// Refused: the policy, the declared tools, deny-all, or any fault.
    #[default]
    Deny,
    /// A malformed intent.
    Invalid,
    /// No or bad credentials.
    Unauthenticated,
    /// The caller's rate quota is spent.
    OverQuota,
}

impl Outcome {
    /// Every outcome, in the order the documentation lists them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allow,
        Outcome::Deny,
        Outcome::Invalid,
        Outcome::Unauthenticated,
        Outcome::OverQuota,
    ];

    /// The outcome's name in records and answers: `allow`, `deny`, `invalid`, `unauthenticated` or
    /// `over_quota`.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Invalid => "invalid",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::OverQuota => "over_quota",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(name: &str) -> Result<Outcome, String> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.name() == name)
            .ok_or_else(|| format!("not a decision outcome: {name:?}"))
    }
}

/// What is active for one agent, in the form deciding needs.
pub struct ReleasePlan {
    agent: String,
    engine: Arc<PolicyEngine>,
    /// Declared tool name -> its compiled argument schema.
    validators: HashMap<String, Arc<ArgsValidator>>,
    /// `input.agent` of every evaluation: name, fingerprint, declared tools.
    agent_input: RegoValue,
    /// The release as records and `/v1/status` describe it.
    description: Value,
}

impl ReleasePlan {
    /// The plan for `agent`: its compiled policy, the argument schema of each declared tool (by
    /// tool name), the declared tool names and behavioral fingerprint the policy sees as
    /// `input.agent`, and the release's description for records and `/v1/status`.
    pub fn new(
        agent: &str,
        engine: Arc<PolicyEngine>,
        validators: HashMap<String, Arc<ArgsValidator>>,
        tool_names: &[String],
        behavioral_fingerprint: &str,
        description: Value,
    ) -> ReleasePlan {
        let tools: Vec<RegoValue> = tool_names
            .iter()
            .map(|name| RegoValue::from(name.as_str()))
            .collect();
        let agent_input = object([
            ("name", RegoValue::from(agent)),
            (
                "behavioral_fingerprint",
                RegoValue::from(behavioral_fingerprint),
            ),
            ("tools", RegoValue::from(tools)),
        ]);
        ReleasePlan {
            agent: agent.to_string(),
            engine,
            validators,
            agent_input,
            description,
        }
    }

    /// The agent this release is active for.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The release as decision records (their `release` field) and `/v1/status` describe it.
    pub fn description(&self) -> &Value {
        &self.description
    }

    fn declares(&self, tool: &str) -> bool {
        self.validators.contains_key(tool)
    }
}

/// What the caller's agent has: an active release, or none (and why not).
#[derive(Clone, Copy)]
pub enum Release<'a> {
    /// The release active for the agent now: the call is decided under it.
    Active(&'a ReleasePlan),
    /// No active release: every call of the agent is denied with `reason`.
    Unavailable {
        /// The caller's agent, named in the decision record.
        agent: &'a str,
        /// Why the agent has no active release: the reason of every deny.
        reason: &'a str,
    },
}

/// A call's result: the outcome, why, the parsed intent (when it parsed) and
/// the decision record to make durable.
pub struct Verdict {
    /// How the call was decided; only a policy that allows gives `Outcome::Allow` (see
    /// docs/architecture.md, INV-03).
    pub outcome: Outcome,
    /// The call's UUID-shaped id, in its records and in the answer.
    pub decision_id: String,
    /// Why, as the caller is told and the record says, with masked values written `***`.
    pub reason: String,
    /// Seconds until the caller's quota holds a token again; set only for `Outcome::OverQuota`.
    pub retry_after_s: Option<f64>,
    /// The parsed intent; `None` when the body did not parse.
    pub intent: Option<Intent>,
    /// The encoded `decision` record, for the store to make durable.
    pub record: Vec<u8>,
}

/// Why a call is refused before the policy is asked.
pub struct Refusal {
    /// `Outcome::OverQuota`, or `Outcome::Deny` when the quota could not be checked.
    pub outcome: Outcome,
    /// Why, in words for the caller.
    pub reason: String,
    /// Seconds until the caller's quota holds a token again, when over quota.
    pub retry_after_s: Option<f64>,
}

/// The node-wide part of deciding: limits, quotas, the tools this node has,
/// decision ids and the record writer.
pub struct Gate {
    limits: IntentLimits,
    quotas: Arc<QuotaTable>,
    /// Tools this node can run (plugins may be registered after start).
    available_tools: RwLock<HashSet<String>>,
    records: RecordWriter,
    ids: DecisionIds,
    node_input: RegoValue,
}

impl Gate {
    /// A gate that bounds every intent by `limits`, charges each caller one token of `quotas` per
    /// request, runs only `available_tools`, encodes records with `records` and numbers decisions
    /// with `ids`.
    pub fn new(
        limits: IntentLimits,
        quotas: Arc<QuotaTable>,
        available_tools: impl IntoIterator<Item = String>,
        records: RecordWriter,
        ids: DecisionIds,
    ) -> Gate {
        let node_input = object([("id", RegoValue::from(records.node_id()))]);
        Gate {
            limits,
            quotas,
            available_tools: RwLock::new(available_tools.into_iter().collect()),
            records,
            ids,
            node_input,
        }
    }

    /// The record writer, for the records written outside [`Gate::decide`]: tool outcomes, events
    /// and calls refused before it.
    pub fn records(&self) -> &RecordWriter {
        &self.records
    }

    /// Replaces the set of tools this node can run.
    pub fn set_available_tools(&self, tools: impl IntoIterator<Item = String>) {
        let tools = tools.into_iter().collect();
        *self
            .available_tools
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tools;
    }

    fn is_available(&self, tool: &str) -> bool {
        self.available_tools
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(tool)
    }

    /// A fresh decision id, for a call answered without [`Gate::decide`] (unauthenticated, or
    /// refused before it).
    pub fn next_id(&self) -> String {
        self.ids.next_id()
    }

    /// Takes one token from `caller`'s quota: `Ok` when taken, else how the
    /// call is refused (over quota, or denied when the quota cannot be checked).
    pub fn charge(&self, caller: &str) -> Result<(), Refusal> {
        match self.quotas.try_take(caller, 1.0) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let wait = self.quotas.wait_time(caller, 1.0).unwrap_or(1.0);
                Err(Refusal {
                    outcome: Outcome::OverQuota,
                    reason: format!(
                        "caller {} is over its rate quota; retry in {wait:.3} s",
                        py_repr(caller)
                    ),
                    retry_after_s: Some(wait),
                })
            }
            Err(err) => Err(Refusal {
                outcome: Outcome::Deny,
                reason: format!("rate quota could not be checked ({err}); denied"),
                retry_after_s: None,
            }),
        }
    }

    /// Decides `body` for `caller` under `release` (the caller's agent's).
    pub fn decide(&self, release: Release<'_>, caller: &str, body: &[u8]) -> Verdict {
        let (plan, agent) = match release {
            Release::Active(plan) => (Some(plan), plan.agent.as_str()),
            Release::Unavailable { agent, .. } => (None, agent),
        };
        let mut call = Call {
            gate: self,
            plan,
            agent,
            caller,
            decision_id: self.ids.next_id(),
            hidden: Vec::new(),
        };
        // Every request counts against the caller's quota, well-formed or not:
        // a caller sending garbage is held to its rate like any other
        // (docs/threat-model.md, "Refusals").
        let parsed = parse_intent(body, &self.limits);
        if let Err(refusal) = self.charge(caller) {
            let mut verdict = call.refuse(refusal.outcome, refusal.reason, parsed.ok(), true);
            verdict.retry_after_s = refusal.retry_after_s;
            return verdict;
        }
        let intent = match parsed {
            Ok(intent) => intent,
            Err(err) => {
                let reason = format!("invalid intent: {err}");
                return call.refuse(Outcome::Invalid, reason, None, false);
            }
        };
        call.hidden = self
            .records
            .mask()
            .hidden_values(&[&intent.args, &intent.claims]);
        let plan = match release {
            Release::Active(plan) => plan,
            Release::Unavailable { reason, .. } => {
                return call.refuse(Outcome::Deny, reason.to_string(), Some(intent), false)
            }
        };
        let tool = intent.tool.as_str();
        let declared = plan.declares(tool);
        if let Some(validator) = plan.validators.get(tool) {
            let args = Value::Object(intent.args.clone());
            // With a mask list the message quotes no argument value at all:
            // which of them are safe to echo is not for the schema to know.
            let problem = if self.records.mask().is_empty() {
                validator.problem(&args)
            } else {
                validator.problem_masked(&args, MASK)
            };
            if let Some(problem) = problem {
                let reason = format!(
                    "invalid intent: args do not fit the schema of {}: {problem}",
                    py_repr(tool)
                );
                return call.refuse(Outcome::Invalid, reason, Some(intent), true);
            }
        }
        if !declared {
            let reason = format!(
                "tool {} is not declared by agent {}",
                py_repr(tool),
                py_repr(&plan.agent)
            );
            return call.refuse(Outcome::Deny, reason, Some(intent), true);
        }
        if !self.is_available(tool) {
            let reason = format!(
                "tool {} is declared but not available on this node",
                py_repr(tool)
            );
            return call.refuse(Outcome::Deny, reason, Some(intent), true);
        }
        let now = now_unix_ns();
        let decision = plan
            .engine
            .evaluate(self.policy_input(plan, caller, &intent, now));
        call.decided(intent, &decision, now)
    }

    fn policy_input(
        &self,
        plan: &ReleasePlan,
        caller: &str,
        intent: &Intent,
        now: i128,
    ) -> RegoValue {
        object([
            ("tool", RegoValue::from(intent.tool.as_str())),
            ("args", rego_object(&intent.args)),
            ("caller", object([("id", RegoValue::from(caller))])),
            ("claims", rego_object(&intent.claims)),
            ("agent", plan.agent_input.clone()),
            ("node", self.node_input.clone()),
            ("time", RegoValue::from(timestamp(now))),
        ])
    }
}

/// The state one call carries to its records.
struct Call<'a> {
    gate: &'a Gate,
    plan: Option<&'a ReleasePlan>,
    agent: &'a str,
    caller: &'a str,
    decision_id: String,
    /// Values under masked names: never echoed in a reason.
    hidden: Vec<String>,
}

impl Call<'_> {
    fn refuse(
        self,
        outcome: Outcome,
        reason: String,
        intent: Option<Intent>,
        named_release: bool,
    ) -> Verdict {
        let reason = self.scrubbed(reason);
        let record = self.record(
            outcome,
            &reason,
            intent.as_ref(),
            named_release,
            None,
            now_unix_ns(),
        );
        Verdict {
            outcome,
            decision_id: self.decision_id,
            reason,
            retry_after_s: None,
            intent,
            record,
        }
    }

    fn decided(self, intent: Intent, decision: &Decision, now: i128) -> Verdict {
        let (outcome, reason) = if decision.allow {
            (Outcome::Allow, decision.reason.clone())
        } else {
            let reason = if decision.reason.is_empty() {
                "denied by policy".to_string()
            } else {
                decision.reason.clone()
            };
            match decision.fault {
                Some(fault) => (Outcome::Deny, format!("policy {}: {reason}", fault.name())),
                None => (Outcome::Deny, reason),
            }
        };
        // A policy may quote arguments in its reason; masked values are not repeated.
        let reason = self.scrubbed(reason);
        let record = self.record(outcome, &reason, Some(&intent), true, Some(decision), now);
        Verdict {
            outcome,
            decision_id: self.decision_id,
            reason,
            retry_after_s: None,
            intent: Some(intent),
            record,
        }
    }

    fn scrubbed(&self, reason: String) -> String {
        if self.hidden.is_empty() {
            reason
        } else {
            scrub(&reason, &self.hidden)
        }
    }

    fn record(
        &self,
        outcome: Outcome,
        reason: &str,
        intent: Option<&Intent>,
        named_release: bool,
        result: Option<&Decision>,
        now: i128,
    ) -> Vec<u8> {
        let facts = DecisionFacts {
            decision_id: &self.decision_id,
            outcome,
            reason: Some(reason),
            caller: Some(self.caller),
            agent: Some(self.agent),
            tool: intent.map(|intent| intent.tool.as_str()),
            request_id: intent.and_then(|intent| intent.request_id.as_deref()),
            args: intent.map(|intent| &intent.args),
            claims: intent.map(|intent| &intent.claims),
            release: self
                .plan
                .filter(|_| named_release)
                .map(ReleasePlan::description),
            result,
        };
        self.gate.records.decision(&facts, now)
    }
}

/// A JSON object as a Rego value.
fn rego_object(members: &serde_json::Map<String, Value>) -> RegoValue {
    RegoValue::from(
        members
            .iter()
            .map(|(name, value)| (RegoValue::from(name.as_str()), rego_value(value)))
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

fn rego_value(value: &Value) -> RegoValue {
    match value {
        Value::Null => RegoValue::Null,
        Value::Bool(flag) => RegoValue::Bool(*flag),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                RegoValue::from(integer)
            } else if let Some(integer) = number.as_u64() {
                RegoValue::from(integer)
            } else {
                // Parsed numbers are finite (NaN and Infinity are refused).
                RegoValue::from(number.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(text) => RegoValue::from(text.as_str()),
        Value::Array(items) => RegoValue::from(items.iter().map(rego_value).collect::<Vec<_>>()),
        Value::Object(members) => rego_object(members),
    }
}
