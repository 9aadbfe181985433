//! The policy engine: a compiled, warmed bundle that turns an input document
//! into a [`Decision`], denying on anything but a well-formed allow.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{LimitError, Value};

use super::bundle::{within_roots, Bundle, RegoVersion};
use super::error::{BundleError, BundleRule};
use super::limits::EvalLimits;
use crate::hashing::Digest;

/// The rule every bundle must define: `data.vedette.decision`.
pub const ENTRY_POINT: &str = "data.vedette.decision";
const ENTRY_PACKAGE: &[&str] = &["vedette"];
const ENTRY_RULE: &str = "decision";

/// Work units between two looks at the clock. The timer costs a clock read
/// per look; 64 keeps that negligible while a runaway loop is still caught
/// within microseconds of the limit.
const TIMER_CHECK_INTERVAL: u32 = 64;

/// At most this many idle engines are kept for reuse; more threads than
/// this at once clone fresh ones and drop them afterwards.
const MAX_IDLE_ENGINES: usize = 64;

/// Why the engine denied without the policy having said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `data.vedette.decision` produced no value for this input.
    Undefined,
    /// Evaluation raised an error (a strict builtin error, a conflict, ...).
    Error,
    /// Evaluation ran past [`EvalLimits::time_limit`].
    Timeout,
    /// The decision was not `{"allow": bool, "reason": string, ...}`.
    Malformed,
    /// The evaluator panicked; caught before it could escape.
    Panic,
}

impl Fault {
    /// The fault's name in reasons and records (`undefined`, `error`, `timeout`, `malformed`,
    /// `panic`).
    pub const fn name(self) -> &'static str {
        match self {
            Fault::Undefined => "undefined",
            Fault::Error => "error",
            Fault::Timeout => "timeout",
            Fault::Malformed => "malformed",
            Fault::Panic => "panic",
        }
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug)]
pub struct Decision {
    /// Whether the policy allows: true only for a well-formed decision whose `allow` is `true`.
    pub allow: bool,
    /// The policy's `reason`, or on a fault the engine's own account of what went wrong.
    pub reason: String,
    /// Set when the engine denied on its own account; `allow` is then false.
    pub fault: Option<Fault>,
    /// The decision object as the policy produced it (`Undefined` on a fault
    /// before one existed), extra fields included.
    pub result: Value,
}

impl Decision {
    /// A deny for an input that never reached the policy (no JSON form, not
    /// UTF-8): a fault like any other.
    pub fn refused_input(reason: impl Into<String>) -> Decision {
        Decision::fault(Fault::Error, reason.into(), Value::Undefined)
    }

    fn fault(fault: Fault, reason: String, result: Value) -> Decision {
        Decision {
            allow: false,
            reason,
            fault: Some(fault),
            result,
        }
    }
}

/// How concurrent evaluations get an engine of their own (regorus engines
/// are mutable while they evaluate). Both start from the one warmed engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineReuse {
    /// Clone the warmed engine for every call.
    ClonePerCall,
    /// Keep engines that finished cleanly and hand them to the next call.
    Pool,
    /// Like `Pool`, but a call that finds no idle engine compiles a new one
    /// from the bundle instead of cloning the warmed one, so concurrent
    /// engines share no reference-counted policy or data (no cache-line
    /// contention on shared counts between cores).
    Independent,
}

impl std::str::FromStr for EngineReuse {
    type Err = String;

    /// `pool`, `clone` or `independent`.
    fn from_str(name: &str) -> Result<EngineReuse, String> {
        match name {
            "pool" => Ok(EngineReuse::Pool),
            "clone" => Ok(EngineReuse::ClonePerCall),
            "independent" => Ok(EngineReuse::Independent),
            other => Err(format!(
                "reuse must be 'pool', 'clone' or 'independent', got {other:?}"
            )),
        }
    }
}

/// Enforces the decision contract of `docs/contracts.md`: the only way to
/// an allow is a `data.vedette.decision` object whose `allow` is `true` and
/// whose `reason` is a string; undefined, errors, time-outs, malformed
/// decisions and panics all deny. A bundle without the entry point is
/// refused here, when the engine is built.
pub struct PolicyEngine {
    warmed: regorus::Engine,
    idle: Mutex<Vec<regorus::Engine>>,
    reuse: EngineReuse,
    /// Kept to compile independent engines ([`EngineReuse::Independent`]).
    bundle: Arc<Bundle>,
    limits: EvalLimits,
    policy_hash: Digest,
    revision: String,
}

impl PolicyEngine {
    /// Compiles and warms a bundle.
    pub fn new(bundle: &Bundle, limits: EvalLimits) -> Result<PolicyEngine, BundleError> {
        // A compiler panic on a hostile module refuses the bundle; it never
        // unwinds into the caller.
        let engine =
            catch_unwind(AssertUnwindSafe(|| compile(bundle, limits))).unwrap_or_else(|_| {
                Err(BundleError::new(
                    BundleRule::Rego,
                    "the Rego compiler failed unexpectedly (it panicked) on this bundle",
                ))
            })?;
        Ok(PolicyEngine {
            warmed: engine,
            idle: Mutex::new(Vec::new()),
            reuse: EngineReuse::Pool,
            bundle: Arc::new(bundle.clone()),
            limits,
            policy_hash: bundle.policy_hash(),
            revision: bundle.manifest().revision.clone(),
        })
    }

    /// Chooses how concurrent evaluations get their engine.
    pub fn with_reuse(mut self, reuse: EngineReuse) -> PolicyEngine {
        self.reuse = reuse;
        self
    }

    /// Adds a Rego function to the warmed engine, for tests that need an
    /// evaluator to fail in ways no real builtin does (panicking).
    #[cfg(test)]
    pub(crate) fn with_test_function(
        mut self,
        path: &str,
        nargs: u8,
        function: Box<dyn regorus::Extension>,
    ) -> PolicyEngine {
        self.warmed
            .add_extension(path.to_string(), nargs, function)
            .expect("test function registers");
        self
    }

    /// SHA-256 of the bundle's canonical file listing: the policy hash a release is checked
    /// against.
    pub fn policy_hash(&self) -> Digest {
        self.policy_hash
    }

    /// The bundle's `.manifest` revision (empty when it has none).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The bounds every evaluation runs under.
    pub fn limits(&self) -> EvalLimits {
        self.limits
    }

    /// Evaluates `data.vedette.decision` for `input`. Never fails and never
    /// panics: every fault is a deny carrying its [`Fault`].
    pub fn evaluate(&self, input: Value) -> Decision {
        let mut engine = self.take_engine();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            engine.set_input(input);
            engine.eval_rule(ENTRY_POINT.to_string())
        }));
        let decision = match outcome {
            Ok(Ok(result)) => interpret(result),
            Ok(Err(err)) if is_timeout(&err) => Decision::fault(
                Fault::Timeout,
                format!(
                    "policy evaluation exceeded the {} ms time limit",
                    self.limits.time_limit.as_millis()
                ),
                Value::Undefined,
            ),
            Ok(Err(err)) => Decision::fault(
                Fault::Error,
                format!("policy evaluation failed: {}", summarize(&err.to_string())),
                Value::Undefined,
            ),
            Err(_) => {
                // The engine may be half-way through anything: never reuse it.
                return Decision::fault(
                    Fault::Panic,
                    "policy evaluation failed unexpectedly (the evaluator panicked)".to_string(),
                    Value::Undefined,
                );
            }
        };
        if decision.fault.is_none() || decision.fault == Some(Fault::Undefined) {
            self.return_engine(engine);
        }
        decision
    }

    /// Parses `input_json` and evaluates it; a malformed input is a deny.
    pub fn evaluate_json(&self, input_json: &str) -> Decision {
        match Value::from_json_str(input_json) {
            Ok(input) => self.evaluate(input),
            Err(err) => Decision::fault(
                Fault::Error,
                format!("input is not valid JSON: {}", summarize(&err.to_string())),
                Value::Undefined,
            ),
        }
    }

    fn take_engine(&self) -> regorus::Engine {
        if self.reuse != EngineReuse::ClonePerCall {
            if let Some(engine) = self.idle_engines().pop() {
                return engine;
            }
        }
        if self.reuse == EngineReuse::Independent {
            // It compiled once; should it not now, the clone is as good.
            if let Ok(Ok(engine)) =
                catch_unwind(AssertUnwindSafe(|| compile(&self.bundle, self.limits)))
            {
                return engine;
            }
        }
        self.warmed.clone()
    }

    fn return_engine(&self, engine: regorus::Engine) {
        if self.reuse != EngineReuse::ClonePerCall {
            let mut idle = self.idle_engines();
            if idle.len() < MAX_IDLE_ENGINES {
                idle.push(engine);
            }
        }
    }

    fn idle_engines(&self) -> std::sync::MutexGuard<'_, Vec<regorus::Engine>> {
        // A poisoned pool only ever holds engines that finished cleanly.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Compiles a bundle into a warmed regorus engine: every check that needs the
/// Rego compiler (syntax, package roots, the entry point) happens here.
fn compile(bundle: &Bundle, limits: EvalLimits) -> Result<regorus::Engine, BundleError> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(bundle.manifest().rego_version == RegoVersion::V0);
    // Builtin errors (a bad regex, a type mismatch) raise instead of
    // quietly making an expression undefined; raised errors deny.
    engine.set_strict_builtin_errors(true);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: limits.time_limit,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    });
    for module in bundle.modules() {
        engine
            .add_policy(module.path.clone(), module.source.clone())
            .map_err(|err| BundleError::at(&module.path, BundleRule::Rego, err.to_string()))?;
    }
    let packages = engine
        .get_policy_package_components()
        .map_err(|err| BundleError::new(BundleRule::Rego, err.to_string()))?;
    let roots = &bundle.manifest().roots;
    for package in &packages {
        let components: Vec<&str> = package.components.iter().map(String::as_str).collect();
        if !within_roots(&components, roots) {
            return Err(BundleError::at(
                &package.source_file,
                BundleRule::Roots,
                format!(
                    "package data.{} is outside the manifest roots {roots:?}",
                    package.components.join(".")
                ),
            ));
        }
    }
    let mut has_entry_point = false;
    for package in &packages {
        if package.components == ENTRY_PACKAGE {
            has_entry_point |= engine
                .has_declared_rule_rooted_at(&package.source_file, ENTRY_RULE)
                .map_err(|err| {
                    BundleError::at(&package.source_file, BundleRule::Rego, err.to_string())
                })?;
        }
    }
    if !has_entry_point {
        return Err(BundleError::new(
            BundleRule::EntryPoint,
            format!("no module defines the rule {ENTRY_POINT}"),
        ));
    }
    engine
        .add_data(Value::from(bundle.data().clone()))
        .map_err(|err| BundleError::new(BundleRule::Data, err.to_string()))?;
    // Warm: the first evaluation prepares the interpreter (rule indexes,
    // scheduling); clones made afterwards start prepared. Compile errors
    // surface here; an evaluation error on an empty input does not
    // matter, as real inputs differ.
    engine.set_input(Value::new_object());
    if let Err(err) = engine.eval_rule(ENTRY_POINT.to_string()) {
        if is_compile_error(&err) {
            return Err(BundleError::new(
                BundleRule::Rego,
                summarize(&err.to_string()),
            ));
        }
    }
    Ok(engine)
}

/// Turns the value of `data.vedette.decision` into a decision, denying
/// unless it is exactly `{"allow": true|false, "reason": "...", ...}`.
fn interpret(result: Value) -> Decision {
    let Value::Object(members) = &result else {
        let (fault, reason) = match result {
            Value::Undefined => (
                Fault::Undefined,
                format!("policy decision {ENTRY_POINT} is undefined for this input"),
            ),
            ref other => (
                Fault::Malformed,
                format!(
                    "policy decision must be an object with 'allow' and 'reason', got {}",
                    type_name(other)
                ),
            ),
        };
        return Decision::fault(fault, reason, result);
    };
    let allow = match members.get(&Value::from("allow")) {
        Some(Value::Bool(allow)) => *allow,
        Some(other) => {
            let reason = format!(
                "policy decision 'allow' must be a boolean, got {}",
                type_name(other)
            );
            return Decision::fault(Fault::Malformed, reason, result);
        }
        None => {
            let reason = "policy decision has no 'allow' field".to_string();
            return Decision::fault(Fault::Malformed, reason, result);
        }
    };
    let reason = match members.get(&Value::from("reason")) {
        Some(Value::String(reason)) => reason.to_string(),
        Some(other) => {
            let reason = format!(
                "policy decision 'reason' must be a string, got {}",
                type_name(other)
            );
            return Decision::fault(Fault::Malformed, reason, result);
        }
        None => {
            let reason = "policy decision has no 'reason' field".to_string();
            return Decision::fault(Fault::Malformed, reason, result);
        }
    };
    Decision {
        allow,
        reason,
        fault: None,
        result,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Set(_) => "a set",
        Value::Object(_) => "an object",
        Value::Undefined => "undefined",
    }
}

fn is_timeout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<LimitError>(),
            Some(LimitError::TimeLimitExceeded { .. })
        )
    }) || err.to_string().contains("time limit")
}

/// Errors that mean the policy itself is broken rather than that it failed
/// on this input: these refuse the bundle at load.
fn is_compile_error(err: &anyhow::Error) -> bool {
    let text = err.to_string();
    [
        "recursion",
        "not a valid rule path",
        "could not find function",
        "unknown function",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// One line from a regorus error, which spans several (a source excerpt with
/// a caret): `p.rego:2:42: could not find function x`.
fn summarize(text: &str) -> String {
    let location = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("--> "))
        .map(str::trim);
    let message = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("error: "))
        .or_else(|| text.lines().map(str::trim).find(|line| !line.is_empty()))
        .unwrap_or("unknown error");
    match location {
        Some(location) => format!("{location}: {message}"),
        None => message.to_string(),
    }
}

/// A JSON object from (name, value) pairs, for building inputs in Rust.
pub fn object(members: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::from(
        members
            .into_iter()
            .map(|(name, value)| (Value::from(name), value))
            .collect::<BTreeMap<Value, Value>>(),
    )
}
