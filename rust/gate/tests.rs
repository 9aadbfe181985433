//! The gate against real policies, quotas and records.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::policy::{ArgsValidator, Bundle, BundleLimits, EvalLimits, PolicyEngine};
use crate::quota::{Clock, QuotaTable};

const LIMITS: IntentLimits = IntentLimits {
    max_depth: 8,
    max_args_bytes: 200,
    max_claims_bytes: 50,
};

const POLICY: &str = r#"package vedette

default decision := {"allow": false, "reason": "denied by default"}

decision := {"allow": true, "reason": "echo is harmless", "seen": input.claims} if {
    input.tool == "echo"
    input.agent.name == "agent-a"
    input.caller.id == "c1"
    input.node.id == "node-1"
    input.args.text != "forbidden"
}
"#;

fn refusal(body: &[u8]) -> String {
    match parse_intent(body, &LIMITS) {
        Ok(intent) => panic!(
            "{:?} should be refused, parsed {intent:?}",
            String::from_utf8_lossy(body)
        ),
        Err(err) => err.0,
    }
}

#[test]
fn a_well_formed_intent_parses() {
    let intent = parse_intent(
        br#"{"tool": "fs.read", "args": {"path": "/data/a.csv"}, "claims": {"role": "admin"}}"#,
        &LIMITS,
    )
    .unwrap();
    assert_eq!(intent.tool, "fs.read");
    assert_eq!(Value::Object(intent.args), json!({"path": "/data/a.csv"}));
    assert_eq!(Value::Object(intent.claims), json!({"role": "admin"}));
    assert_eq!(intent.request_id, None);
    let intent = parse_intent(br#"{"tool":"echo","request_id":"r-1"}"#, &LIMITS).unwrap();
    assert!(intent.args.is_empty() && intent.claims.is_empty());
    assert_eq!(intent.request_id.as_deref(), Some("r-1"));
}

#[test]
fn malformed_bodies_are_refused_with_a_reason() {
    let deep_args = format!(
        r#"{{"tool": "echo", "args": {}1{}}}"#,
        r#"{"a":"#.repeat(9),
        "}".repeat(9)
    );
    let very_deep = format!(
        r#"{{"tool": "echo", "args": {{"a": {}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let long_tool = format!(r#"{{"tool": "{}"}}"#, "a".repeat(129));
    let long_args = format!(
        r#"{{"tool": "echo", "args": {{"x": "{}"}}}}"#,
        "y".repeat(300)
    );
    let long_claims = format!(
        r#"{{"tool": "echo", "claims": {{"x": "{}"}}}}"#,
        "y".repeat(60)
    );
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"{} {}", "not JSON"),
        (b"\xff\xfe", "not UTF-8 (byte 0)"),
        (b"[]", "must be a JSON object, got array"),
        (b"\"echo\"", "must be a JSON object, got string"),
        (b"null", "must be a JSON object, got null"),
        (b"{}", "tool must be a name"),
        (br#"{"tool": ""}"#, "tool must be a name"),
        (br#"{"tool": 7}"#, "got 7"),
        (br#"{"tool": "a b"}"#, "got 'a b'"),
        (br#"{"tool": "../x"}"#, "tool must be a name"),
        (long_tool.as_bytes(), "tool must be a name"),
        (
            br#"{"tool": "echo", "tool": "fs.read"}"#,
            "duplicate member name 'tool'",
        ),
        (
            br#"{"tool": "echo", "args": {"a": 1, "a": 2}}"#,
            "duplicate member name 'a'",
        ),
        (
            br#"{"tool": "echo", "args": {"b": [{"a": 1, "a": 2}]}}"#,
            "duplicate member name 'a'",
        ),
        (
            br#"{"tool": "echo", "admin": true}"#,
            "unknown field 'admin'",
        ),
        (
            br#"{"tool": "echo", "args": []}"#,
            "args must be a JSON object, got array",
        ),
        (
            br#"{"tool": "echo", "claims": "root"}"#,
            "claims must be a JSON object, got string",
        ),
        (
            br#"{"tool": "echo", "args": {"x": NaN}}"#,
            "NaN is not a JSON number",
        ),
        (
            br#"{"tool": "echo", "args": {"x": Infinity}}"#,
            "Infinity is not a JSON number",
        ),
        (
            br#"{"tool": "echo", "args": {"x": -Infinity}}"#,
            "Infinity is not a JSON number",
        ),
        (
            br#"{"tool": "echo", "args": {"x": "\ud800"}}"#,
            "lone surrogate",
        ),
        (
            br#"{"tool": "echo", "args": {"\udfff": 1}}"#,
            "lone surrogate",
        ),
        (
            br#"{"tool": "echo", "args": {"x": 18446744073709551616}}"#,
            "outside the 64-bit range",
        ),
        (
            br#"{"tool": "echo", "args": {"x": -9223372036854775809}}"#,
            "outside the 64-bit range",
        ),
        (long_args.as_bytes(), "over the 200-byte limit"),
        (long_claims.as_bytes(), "over the 50-byte limit"),
        (deep_args.as_bytes(), "deeper than 8"),
        (very_deep.as_bytes(), "nests too deeply"),
        (
            br#"{"tool": "echo", "request_id": 5}"#,
            "request_id must be a string",
        ),
        (
            br#"{"tool": "echo", "request_id": ""}"#,
            "request_id must be a string",
        ),
    ];
    for (body, expected) in cases {
        let reason = refusal(body);
        assert!(
            reason.contains(expected),
            "{:?}: {reason:?} does not say {expected:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
    }
}

#[test]
fn an_error_inside_a_multibyte_character_is_a_reason_not_a_panic() {
    // Found by the `intent` fuzz target: the parser's error column fell inside 'א'.
    let body = b"\"e  ~  o,e  ~ \xd7\x90";
    assert!(refusal(body).starts_with("body is not JSON"));
}

#[test]
fn numbers_strings_and_limits_at_their_edges_parse() {
    let body = br#"{"tool": "echo", "args": {"a": 18446744073709551615, "b": -9223372036854775808,
        "c": 1.5e300, "d": "\"18446744073709551616\"", "e": "\ud83d\ude00"}, "request_id": "x"}"#;
    let intent = parse_intent(body, &LIMITS).unwrap();
    assert_eq!(intent.args["a"], json!(u64::MAX));
    assert_eq!(intent.args["b"], json!(i64::MIN));
    assert_eq!(intent.args["c"], json!(1.5e300));
    assert_eq!(intent.args["e"], json!("\u{1F600}"));
    let at_depth = format!(
        r#"{{"tool": "echo", "args": {}1{}}}"#,
        r#"{"a":"#.repeat(7),
        "}".repeat(7)
    );
    assert!(parse_intent(at_depth.as_bytes(), &LIMITS).is_ok());
    let id = "é".repeat(128);
    let body = format!(r#"{{"tool": "echo", "request_id": "{id}"}}"#);
    assert_eq!(
        parse_intent(body.as_bytes(), &LIMITS).unwrap().request_id,
        Some(id)
    );
}

#[test]
fn python_repr_quotes_like_python() {
    assert_eq!(py_repr("echo"), "'echo'");
    assert_eq!(py_repr("it's"), "\"it's\"");
    assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
    assert_eq!(py_repr("x\ny\\"), "'x\\ny\\\\'");
}

#[test]
fn timestamps_are_rfc3339_with_nanoseconds() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        timestamp(1_795_000_000_123_456_789),
        "2026-11-18T11:06:40.123456789Z"
    );
}

#[test]
fn decision_ids_are_distinct_and_uuid_shaped() {
    let ids = DecisionIds::new(0x0123_4567_89ab_cdef);
    assert_eq!(ids.next_id(), "01234567-89ab-cdef-0000-000000000001");
    assert_eq!(ids.next_id(), "01234567-89ab-cdef-0000-000000000002");
    let random = DecisionIds::random();
    assert_ne!(random.next_id(), DecisionIds::random().next_id());
}

#[test]
fn records_mask_named_values_at_any_depth() {
    let writer = RecordWriter::new("node-1", ["token".to_string()]);
    let args = json!({"token": "s3cret", "nested": [{"token": {"deep": 1}, "keep": 2}]});
    let claims = json!({"role": "admin"});
    let facts = DecisionFacts {
        decision_id: "id-1",
        outcome: Outcome::Deny,
        reason: Some("no"),
        caller: Some("c1"),
        args: args.as_object(),
        claims: claims.as_object(),
        ..DecisionFacts::default()
    };
    let record: Value = serde_json::from_slice(&writer.decision(&facts, 0)).unwrap();
    assert_eq!(
        record["input"],
        json!({"args": {"token": "***", "nested": [{"token": "***", "keep": 2}]},
               "claims": {"role": "admin"}})
    );
    assert_eq!(record["schema"], SCHEMA);
    assert_eq!(record["kind"], "decision");
    assert_eq!(record["node"], "node-1");
    assert_eq!(record["agent"], Value::Null);
    assert_eq!(record["timestamp"], "1970-01-01T00:00:00.000000000Z");
    let outcome = OutcomeFacts {
        decision_id: "id-1",
        tool: "echo",
        status: "error",
        output_digest: None,
        output_bytes: None,
        error: Some(("timeout", "too slow")),
        duration_ms: 1.234_567,
    };
    let record: Value = serde_json::from_slice(&writer.tool_outcome(&outcome, 0)).unwrap();
    assert_eq!(
        record["error"],
        json!({"type": "timeout", "message": "too slow"})
    );
    assert_eq!(record["duration_ms"], json!(1.235));
    assert_eq!(record["kind"], "tool_outcome");
}

struct Fixture {
    gate: Gate,
    plan: ReleasePlan,
}

fn fixture(rate_per_s: f64, burst: f64, available: &[&str]) -> Fixture {
    let files = [(
        "vedette/policy.rego".to_string(),
        POLICY.as_bytes().to_vec(),
    )]
    .into_iter()
    .collect();
    let bundle = Bundle::from_files(files, &BundleLimits::default()).unwrap();
    let engine = Arc::new(PolicyEngine::new(&bundle, EvalLimits::default()).unwrap());
    let echo_schema = json!({"type": "object", "properties": {"text": {"type": "string"}},
                             "required": ["text"]});
    let validators: HashMap<_, _> = [
        (
            "echo".to_string(),
            Arc::new(ArgsValidator::new(&echo_schema).unwrap()),
        ),
        (
            "fs.read".to_string(),
            Arc::new(ArgsValidator::new(&json!({})).unwrap()),
        ),
    ]
    .into_iter()
    .collect();
    let tools = ["echo".to_string(), "fs.read".to_string()];
    let plan = ReleasePlan::new(
        "agent-a",
        engine,
        validators,
        &tools,
        "sha256:00",
        json!({"agent": "agent-a", "version": "1"}),
    );
    let quotas = Arc::new(QuotaTable::new(rate_per_s, burst, 16, Clock::Monotonic).unwrap());
    let gate = Gate::new(
        LIMITS,
        quotas,
        available.iter().map(|name| name.to_string()),
        RecordWriter::new("node-1", ["text".to_string()]),
        DecisionIds::new(1),
    );
    Fixture { gate, plan }
}

fn record_of(verdict: &Verdict) -> Value {
    serde_json::from_slice(&verdict.record).unwrap()
}

#[test]
fn the_policy_allows_and_the_record_says_why() {
    let f = fixture(1000.0, 1000.0, &["echo", "fs.read"]);
    let verdict = f.gate.decide(
        Release::Active(&f.plan),
        "c1",
        br#"{"tool":"echo","args":{"text":"hi"},"claims":{"role":"x"},"request_id":"r"}"#,
    );
    assert_eq!(verdict.outcome, Outcome::Allow, "{}", verdict.reason);
    assert_eq!(verdict.reason, "echo is harmless");
    assert_eq!(verdict.intent.as_ref().unwrap().args["text"], "hi");
    let record = record_of(&verdict);
    assert_eq!(record["outcome"], "allow");
    assert_eq!(record["decision_id"], verdict.decision_id);
    assert_eq!(record["caller"], "c1");
    assert_eq!(record["agent"], "agent-a");
    assert_eq!(record["tool"], "echo");
    assert_eq!(record["request_id"], "r");
    assert_eq!(record["input"]["args"], json!({"text": "***"}));
    assert_eq!(
        record["release"],
        json!({"agent": "agent-a", "version": "1"})
    );
    assert_eq!(
        record["result"],
        json!({"allow": true, "reason": "echo is harmless", "fault": null,
               "result": {"allow": true, "reason": "echo is harmless", "seen": {"role": "x"}}})
    );
}

#[test]
fn each_refusal_denies_with_its_own_outcome_and_record() {
    let f = fixture(1000.0, 1000.0, &["echo"]);
    let cases: [(&[u8], Outcome, &str); 6] = [
        (b"{", Outcome::Invalid, "invalid intent: body is not JSON"),
        (
            br#"{"tool":"echo","args":{"text":5}}"#,
            Outcome::Invalid,
            "do not fit the schema of 'echo'",
        ),
        (
            br#"{"tool":"echo","args":{"text":"forbidden"}}"#,
            Outcome::Deny,
            "denied by default",
        ),
        (
            br#"{"tool":"rm","args":{}}"#,
            Outcome::Deny,
            "tool 'rm' is not declared by agent 'agent-a'",
        ),
        (
            br#"{"tool":"fs.read","args":{}}"#,
            Outcome::Deny,
            "declared but not available on this node",
        ),
        (
            br#"{"tool":"echo","args":{"text":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}}}"#,
            Outcome::Invalid,
            "nests deeper than 8",
        ),
    ];
    for (body, outcome, reason) in cases {
        let verdict = f.gate.decide(Release::Active(&f.plan), "c1", body);
        assert_eq!(verdict.outcome, outcome, "{}", verdict.reason);
        assert!(
            verdict.reason.contains(reason),
            "{:?} lacks {reason:?}",
            verdict.reason
        );
        let record = record_of(&verdict);
        assert_eq!(record["outcome"], outcome.name());
        assert_eq!(record["reason"], verdict.reason);
        assert_eq!(record["decision_id"], verdict.decision_id);
    }
    // A tool registered later becomes available.
    f.gate
        .set_available_tools(["echo".to_string(), "fs.read".to_string()]);
    let verdict = f.gate.decide(
        Release::Active(&f.plan),
        "c1",
        br#"{"tool":"fs.read","args":{}}"#,
    );
    assert_eq!(verdict.reason, "denied by default");
    // A caller other than the one the policy allows is denied by the policy.
    let verdict = f.gate.decide(
        Release::Active(&f.plan),
        "c2",
        br#"{"tool":"echo","args":{"text":"hi"}}"#,
    );
    assert_eq!(verdict.outcome, Outcome::Deny);
}

#[test]
fn a_caller_over_its_quota_is_refused_with_a_wait() {
    let f = fixture(0.001, 2.0, &["echo"]);
    let body = br#"{"tool":"echo","args":{"text":"hi"}}"#;
    assert_eq!(
        f.gate.decide(Release::Active(&f.plan), "c1", body).outcome,
        Outcome::Allow
    );
    assert_eq!(
        f.gate.decide(Release::Active(&f.plan), "c1", body).outcome,
        Outcome::Allow
    );
    let verdict = f.gate.decide(Release::Active(&f.plan), "c1", body);
    assert_eq!(verdict.outcome, Outcome::OverQuota);
    assert!(verdict.retry_after_s.unwrap() > 100.0);
    assert!(verdict
        .reason
        .starts_with("caller 'c1' is over its rate quota"));
    // Another caller has its own bucket.
    assert_eq!(
        f.gate.decide(Release::Active(&f.plan), "c3", body).outcome,
        Outcome::Deny
    );
}

#[test]
fn an_agent_without_a_release_is_denied_after_its_intent_is_read() {
    let f = fixture(1000.0, 1000.0, &["echo"]);
    let unavailable = Release::Unavailable {
        agent: "agent-b",
        reason: "no active release for agent 'agent-b'",
    };
    let verdict = f.gate.decide(
        unavailable,
        "c1",
        br#"{"tool":"echo","args":{"text":"hi"}}"#,
    );
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(verdict.reason, "no active release for agent 'agent-b'");
    let record = record_of(&verdict);
    assert_eq!(record["agent"], "agent-b");
    assert_eq!(record["tool"], "echo");
    assert_eq!(record["release"], Value::Null);
    // A malformed body is still refused as malformed.
    assert_eq!(
        f.gate.decide(unavailable, "c1", b"[").outcome,
        Outcome::Invalid
    );
}

#[test]
fn metrics_count_by_labels_and_bucket_latency() {
    let metrics = DecisionMetrics::new();
    metrics.record("allow", "echo", "a", 0.0002);
    metrics.record("allow", "echo", "a", 0.003);
    metrics.record("deny", "other", "a", 99.0);
    metrics.record("deny", "other", "a", f64::NAN);
    let counts = metrics.counts();
    assert_eq!(counts.len(), 2);
    assert_eq!((counts[0].outcome.as_str(), counts[0].count), ("allow", 2));
    assert_eq!((counts[1].tool.as_str(), counts[1].count), ("other", 2));
    let latency = metrics.latency();
    assert_eq!(latency.count, 4);
    assert_eq!(latency.cumulative.len(), LATENCY_BUCKETS.len() + 1);
    assert_eq!(latency.cumulative[0], 1); // NaN counts as 0 s
    assert_eq!(latency.cumulative[1], 2); // 0.2 ms <= 0.25 ms
    assert_eq!(latency.cumulative[LATENCY_BUCKETS.len() - 1], 3);
    assert_eq!(latency.cumulative[LATENCY_BUCKETS.len()], 4); // 99 s only in +Inf
    assert!((latency.sum_seconds - 99.0032).abs() < 1e-6);
}

proptest! {
    /// Whatever an adapter sends, the parser answers an intent or a reason,
    /// never a panic; and what it accepts has a tool name and objects.
    #[test]
    fn arbitrary_bodies_parse_or_are_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(intent) = parse_intent(&body, &LIMITS) {
            prop_assert!(crate::policy::is_name(&intent.tool));
        }
    }

    /// Bodies that are almost intents (JSON-shaped text around the fields).
    #[test]
    fn intent_shaped_text_parses_or_is_refused(
        tool in "[a-z.]{0,6}",
        value in r#"(\{|\}|\[|\]|"[a-z\\]{0,4}"|-?[0-9]{1,22}(\.[0-9])?|true|null|,|:| ){0,24}"#,
    ) {
        let body = format!(r#"{{"tool": "{tool}", "args": {{"a": {value}}}}}"#);
        if let Ok(intent) = parse_intent(body.as_bytes(), &LIMITS) {
            prop_assert_eq!(intent.tool, tool);
        }
    }
}

#[test]
fn malformed_intents_count_against_the_callers_quota() {
    let f = fixture(0.001, 2.0, &["echo"]);
    for _ in 0..2 {
        assert_eq!(
            f.gate
                .decide(Release::Active(&f.plan), "c1", b"{not json")
                .outcome,
            Outcome::Invalid
        );
    }
    // The two malformed requests spent the burst: a good one now waits.
    let verdict = f.gate.decide(
        Release::Active(&f.plan),
        "c1",
        br#"{"tool":"echo","args":{"text":"hi"}}"#,
    );
    assert_eq!(verdict.outcome, Outcome::OverQuota);
    assert!(verdict.retry_after_s.unwrap() > 100.0);
    // …and so does more garbage: over quota, still recorded as such.
    let verdict = f.gate.decide(Release::Active(&f.plan), "c1", b"[");
    assert_eq!(verdict.outcome, Outcome::OverQuota);
    assert_eq!(record_of(&verdict)["outcome"], "over_quota");
    assert!(f.gate.charge("c1").is_err());
    assert!(f.gate.charge("c9").is_ok());
}

const ECHOING_POLICY: &str = r#"package vedette

default decision := {"allow": false, "reason": "denied by default"}

decision := {"allow": false, "reason": sprintf("login %s with %s refused", [input.args.user, input.args.Password])} if {
    input.tool == "login"
}
"#;

fn login_gate(mask: &[&str]) -> (Gate, ReleasePlan) {
    let files = [(
        "vedette/policy.rego".to_string(),
        ECHOING_POLICY.as_bytes().to_vec(),
    )]
    .into_iter()
    .collect();
    let bundle = Bundle::from_files(files, &BundleLimits::default()).unwrap();
    let engine = Arc::new(PolicyEngine::new(&bundle, EvalLimits::default()).unwrap());
    let schema = json!({"type": "object", "properties": {
        "user": {"type": "string"},
        "Password": {"type": "string", "pattern": "^[a-z]+$"}}});
    let validators: HashMap<_, _> = [(
        "login".to_string(),
        Arc::new(ArgsValidator::new(&schema).unwrap()),
    )]
    .into_iter()
    .collect();
    let plan = ReleasePlan::new(
        "agent-a",
        engine,
        validators,
        &["login".to_string()],
        "blake3:00",
        json!({"agent": "agent-a"}),
    );
    let quotas = Arc::new(QuotaTable::new(1000.0, 1000.0, 16, Clock::Monotonic).unwrap());
    let gate = Gate::new(
        LIMITS,
        quotas,
        ["login".to_string()],
        RecordWriter::new("node-1", mask.iter().map(|m| m.to_string())),
        DecisionIds::new(1),
    );
    (gate, plan)
}

#[test]
fn a_masked_value_never_reaches_a_reason() {
    let (gate, plan) = login_gate(&["password"]);
    // The schema refuses the value: the reason says why, without quoting it.
    let verdict = gate.decide(
        Release::Active(&plan),
        "c1",
        br#"{"tool":"login","args":{"user":"ann","Password":"Hunter2!"}}"#,
    );
    assert_eq!(verdict.outcome, Outcome::Invalid);
    assert!(!verdict.reason.contains("Hunter2"), "{}", verdict.reason);
    assert!(
        verdict.reason.contains("(at Password)"),
        "{}",
        verdict.reason
    );
    let record = String::from_utf8(verdict.record.clone()).unwrap();
    assert!(!record.contains("Hunter2"), "{record}");
    // The policy quotes the argument in its reason: the masked value is replaced.
    let verdict = gate.decide(
        Release::Active(&plan),
        "c1",
        br#"{"tool":"login","args":{"user":"ann","Password":"hunter"}}"#,
    );
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(verdict.reason, "login ann with *** refused");
    let record = String::from_utf8(verdict.record.clone()).unwrap();
    assert!(!record.contains("hunter\""), "{record}");
    // Without a mask list the reason is as informative as before.
    let (gate, plan) = login_gate(&[]);
    let verdict = gate.decide(
        Release::Active(&plan),
        "c1",
        br#"{"tool":"login","args":{"user":"ann","Password":"Hunter2!"}}"#,
    );
    assert!(verdict.reason.contains("Hunter2!"), "{}", verdict.reason);
}

#[test]
fn event_records_carry_the_common_header_which_fields_cannot_replace() {
    let writer = RecordWriter::new("node-1", []);
    let fields = json!({"event": "store.reopened", "node": "forged", "count": 2});
    let record: Value =
        serde_json::from_slice(&writer.event("store_event", fields.as_object().unwrap(), 0))
            .unwrap();
    assert_eq!(
        record,
        json!({"schema": SCHEMA, "kind": "store_event", "timestamp": "1970-01-01T00:00:00.000000000Z",
               "node": "node-1", "event": "store.reopened", "count": 2})
    );
}
