//! Tests of the policy module against real bundles, archives and engines.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use super::*;

const ALLOW_ECHO: &str = r#"package vedette

default decision := {"allow": false, "reason": "denied by default"}

decision := {"allow": true, "reason": "echo is harmless"} if input.tool == "echo"
"#;

fn files(entries: &[(&str, &str)]) -> BundleFiles {
    entries
        .iter()
        .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
        .collect()
}

fn bundle(entries: &[(&str, &str)]) -> Result<Bundle, BundleError> {
    Bundle::from_files(files(entries), &BundleLimits::default())
}

fn engine(entries: &[(&str, &str)]) -> PolicyEngine {
    let bundle = bundle(entries).expect("bundle loads");
    PolicyEngine::new(&bundle, EvalLimits::default()).expect("engine builds")
}

fn engine_error(entries: &[(&str, &str)]) -> BundleError {
    let bundle = bundle(entries).expect("bundle loads");
    match PolicyEngine::new(&bundle, EvalLimits::default()) {
        Ok(_) => panic!("engine should be refused"),
        Err(err) => err,
    }
}

fn input(tool: &str) -> Value {
    object([("tool", Value::from(tool))])
}

/// A raw tar entry: the path is written into the header as given, so paths
/// that `tar::Builder` would refuse (`..`, absolute) can be made.
fn raw_entry(out: &mut Vec<u8>, path: &str, kind: EntryType, data: &[u8]) {
    let mut header = Header::new_old();
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if kind == EntryType::Symlink {
        header.set_size(0);
        header.as_old_mut().linkname[..4].copy_from_slice(b"/etc");
    }
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    if kind != EntryType::Symlink {
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
}

fn gzip(tar_bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(tar_bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn tarball(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, data) in entries {
        raw_entry(&mut out, path, *kind, data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    gzip(&out)
}

fn read_error(archive: &[u8]) -> BundleError {
    match Bundle::from_tar_gz(archive, &BundleLimits::default()) {
        Ok(_) => panic!("archive should be refused"),
        Err(err) => err,
    }
}

#[test]
fn allow_and_deny_from_the_policy() {
    let engine = engine(&[("policy.rego", ALLOW_ECHO)]);
    let allowed = engine.evaluate(input("echo"));
    assert!(allowed.allow);
    assert_eq!(allowed.reason, "echo is harmless");
    assert_eq!(allowed.fault, None);
    let denied = engine.evaluate(input("shell.exec"));
    assert!(!denied.allow);
    assert_eq!(denied.reason, "denied by default");
    assert_eq!(denied.fault, None);
}

#[test]
fn undefined_decision_denies() {
    let engine = engine(&[(
        "p.rego",
        "package vedette\ndecision := {\"allow\": true, \"reason\": \"x\"} if input.never\n",
    )]);
    let decision = engine.evaluate(input("echo"));
    assert!(!decision.allow);
    assert_eq!(decision.fault, Some(Fault::Undefined));
}

#[test]
fn non_boolean_allow_denies() {
    for allow in ["\"true\"", "1", "[true]", "null"] {
        let policy =
            format!("package vedette\ndecision := {{\"allow\": {allow}, \"reason\": \"r\"}}\n");
        let decision = engine(&[("p.rego", &policy)]).evaluate(input("echo"));
        assert!(!decision.allow, "allow = {allow}");
        assert_eq!(decision.fault, Some(Fault::Malformed), "allow = {allow}");
    }
}

#[test]
fn missing_or_non_string_reason_denies() {
    for decision in [
        r#"{"allow": true}"#,
        r#"{"allow": true, "reason": 7}"#,
        "true",
        "\"allow\"",
    ] {
        let policy = format!("package vedette\ndecision := {decision}\n");
        let result = engine(&[("p.rego", &policy)]).evaluate(input("echo"));
        assert!(!result.allow, "decision = {decision}");
        assert_eq!(
            result.fault,
            Some(Fault::Malformed),
            "decision = {decision}"
        );
    }
}

#[test]
fn evaluation_error_denies() {
    let engine = engine(&[(
        "p.rego",
        "package vedette\ndecision := {\"allow\": true, \"reason\": sprintf(\"%s\", input.tool / 2)}\n",
    )]);
    let decision = engine.evaluate(input("echo"));
    assert!(!decision.allow);
    assert_eq!(decision.fault, Some(Fault::Error), "{}", decision.reason);
}

#[test]
fn runaway_policy_times_out_and_denies() {
    let policy = r#"package vedette
count_all := count([1 | some a in numbers.range(1, 5000); some b in numbers.range(1, 5000)])
decision := {"allow": count_all > 0, "reason": "counted"}
"#;
    let bundle = bundle(&[("p.rego", policy)]).expect("bundle loads");
    let limits = EvalLimits {
        time_limit: Duration::from_millis(50),
    };
    let engine = PolicyEngine::new(&bundle, limits).expect("engine builds");
    let decision = engine.evaluate(input("echo"));
    assert!(!decision.allow);
    assert_eq!(decision.fault, Some(Fault::Timeout), "{}", decision.reason);
}

#[test]
fn bundle_without_entry_point_is_refused() {
    let err = engine_error(&[("p.rego", "package other\nallow := true\n")]);
    assert_eq!(err.rule, BundleRule::EntryPoint);
    let err = engine_error(&[("p.rego", "package vedette\nallow := true\n")]);
    assert_eq!(err.rule, BundleRule::EntryPoint);
    let err = bundle(&[("data.json", "{}")]).unwrap_err();
    assert_eq!(err.rule, BundleRule::EntryPoint);
}

#[test]
fn rego_syntax_error_names_the_file() {
    let err = engine_error(&[("a/p.rego", "package vedette\ndecision := {\n")]);
    assert_eq!(err.rule, BundleRule::Rego);
    assert_eq!(err.file.as_deref(), Some("a/p.rego"));
}

#[test]
fn data_is_mounted_at_its_directory() {
    let policy = r#"package vedette
decision := {"allow": input.tool in data.tools.allowed, "reason": data.messages.text}
"#;
    let engine = engine(&[
        ("p.rego", policy),
        ("tools/data.json", r#"{"allowed": ["echo"]}"#),
        ("messages/data.yaml", "text: from yaml\n"),
    ]);
    let decision = engine.evaluate(input("echo"));
    assert!(decision.allow, "{}", decision.reason);
    assert_eq!(decision.reason, "from yaml");
}

#[test]
fn colliding_data_is_refused() {
    let err = bundle(&[
        ("p.rego", ALLOW_ECHO),
        ("data.json", r#"{"a": {"b": 1}}"#),
        ("a/data.json", r#"{"b": 2}"#),
    ])
    .unwrap_err();
    assert_eq!(err.rule, BundleRule::Data);
}

#[test]
fn roots_are_honoured() {
    let manifest = r#"{"revision": "r1", "roots": ["vedette"]}"#;
    assert!(bundle(&[
        (".manifest", manifest),
        ("p.rego", ALLOW_ECHO),
        ("vedette/data.json", "{}")
    ])
    .is_ok());
    let err = bundle(&[
        (".manifest", manifest),
        ("p.rego", ALLOW_ECHO),
        ("other/data.json", "{}"),
    ])
    .unwrap_err();
    assert_eq!(err.rule, BundleRule::Roots);
    assert_eq!(err.file.as_deref(), Some("other/data.json"));
    let err = bundle(&[
        (".manifest", manifest),
        ("p.rego", ALLOW_ECHO),
        ("data.json", r#"{"x": 1}"#),
    ])
    .unwrap_err();
    assert_eq!(err.rule, BundleRule::Roots);
    let err = engine_error(&[
        (".manifest", manifest),
        ("p.rego", ALLOW_ECHO),
        ("q.rego", "package elsewhere\nx := 1\n"),
    ]);
    assert_eq!(err.rule, BundleRule::Roots);
    assert_eq!(err.file.as_deref(), Some("q.rego"));
}

#[test]
fn rego_version_zero_is_honoured() {
    let v0 = "package vedette\ndecision = {\"allow\": true, \"reason\": \"v0\"} { input.tool == \"echo\" }\n";
    let engine = engine(&[(".manifest", r#"{"rego_version": 0}"#), ("p.rego", v0)]);
    assert!(engine.evaluate(input("echo")).allow);
    let err = engine_error(&[("p.rego", v0)]);
    assert_eq!(err.rule, BundleRule::Rego);
}

#[test]
fn bad_manifests_are_refused() {
    for manifest in [
        "[]",
        r#"{"rego_version": 2}"#,
        r#"{"roots": "vedette"}"#,
        r#"{"roots": ["a", "a/b"]}"#,
        r#"{"wasm": []}"#,
        r#"{"revison": "typo"}"#,
        r#"{"revision": "a", "revision": "b"}"#,
    ] {
        let err = bundle(&[(".manifest", manifest), ("p.rego", ALLOW_ECHO)]).unwrap_err();
        assert_eq!(err.rule, BundleRule::Manifest, "{manifest}");
        assert_eq!(err.file.as_deref(), Some(".manifest"));
    }
}

#[test]
fn path_forms() {
    let limits = BundleLimits::default();
    assert_eq!(
        normalize_path("/a/data.json", &limits).unwrap(),
        "a/data.json"
    );
    assert_eq!(normalize_path("./a/p.rego", &limits).unwrap(), "a/p.rego");
    assert_eq!(normalize_path("a/", &limits).unwrap(), "a");
    for bad in [
        "../p.rego",
        "a/../../p.rego",
        "//etc/passwd",
        "a//b",
        "a/./b",
        "a\\b",
        "a\nb",
    ] {
        let err = normalize_path(bad, &limits).unwrap_err();
        assert_eq!(err.rule, BundleRule::PathForm, "{bad:?}");
    }
}

#[test]
fn tarball_round_trip_is_reproducible() {
    let original = bundle(&[
        (".manifest", r#"{"revision": "1"}"#),
        ("p.rego", ALLOW_ECHO),
        ("a/data.json", r#"{"x": 1}"#),
    ])
    .unwrap();
    let packed = original.to_tar_gz().unwrap();
    assert_eq!(packed, original.to_tar_gz().unwrap());
    let reread = Bundle::from_tar_gz(&packed, &BundleLimits::default()).unwrap();
    assert_eq!(reread.policy_hash(), original.policy_hash());
    assert_eq!(reread.files(), original.files());
}

#[test]
fn traversal_entry_is_refused() {
    let err = read_error(&tarball(&[(
        "../evil.rego",
        EntryType::Regular,
        b"package x",
    )]));
    assert_eq!(err.rule, BundleRule::PathForm);
    assert_eq!(err.file.as_deref(), Some("../evil.rego"));
}

#[test]
fn links_and_devices_are_refused() {
    for kind in [
        EntryType::Symlink,
        EntryType::Link,
        EntryType::Char,
        EntryType::Fifo,
    ] {
        let err = read_error(&tarball(&[("p.rego", kind, b"")]));
        assert_eq!(err.rule, BundleRule::EntryType, "{kind:?}");
    }
}

#[test]
fn corrupt_archive_is_refused() {
    let mut packed = bundle(&[("p.rego", ALLOW_ECHO)])
        .unwrap()
        .to_tar_gz()
        .unwrap();
    let middle = packed.len() / 2;
    packed[middle] ^= 0xff;
    assert_eq!(read_error(&packed).rule, BundleRule::Unreadable);
    assert_eq!(read_error(b"not gzip at all").rule, BundleRule::Unreadable);
    assert_eq!(
        read_error(&packed[..packed.len() / 3]).rule,
        BundleRule::Unreadable
    );
}

#[test]
fn zip_bomb_is_refused() {
    let limits = BundleLimits {
        max_decompressed_bytes: 1024 * 1024,
        ..BundleLimits::default()
    };
    let zeros = vec![b' '; 4 * 1024 * 1024];
    let archive = tarball(&[("data.json", EntryType::Regular, &zeros)]);
    assert!(
        archive.len() < 64 * 1024,
        "the bomb is small: {}",
        archive.len()
    );
    let err = Bundle::from_tar_gz(&archive, &limits).unwrap_err();
    assert_eq!(err.rule, BundleRule::SizeLimit);
}

#[test]
fn entry_and_file_limits() {
    let limits = BundleLimits {
        max_entries: 2,
        max_file_bytes: 100,
        ..BundleLimits::default()
    };
    let many = tarball(&[
        ("a.rego", EntryType::Regular, b"x"),
        ("b.rego", EntryType::Regular, b"x"),
        ("c.rego", EntryType::Regular, b"x"),
    ]);
    assert_eq!(
        Bundle::from_tar_gz(&many, &limits).unwrap_err().rule,
        BundleRule::EntryLimit
    );
    let big = tarball(&[("a.rego", EntryType::Regular, &[b'#'; 200])]);
    let err = Bundle::from_tar_gz(&big, &limits).unwrap_err();
    assert_eq!(err.rule, BundleRule::SizeLimit);
    assert_eq!(err.file.as_deref(), Some("a.rego"));
}

#[test]
fn duplicate_paths_are_refused() {
    let archive = tarball(&[
        ("p.rego", EntryType::Regular, ALLOW_ECHO.as_bytes()),
        ("/p.rego", EntryType::Regular, ALLOW_ECHO.as_bytes()),
    ]);
    assert_eq!(read_error(&archive).rule, BundleRule::DuplicatePath);
}

#[test]
fn policy_hash_ignores_json_layout_but_not_content() {
    let a = bundle(&[
        ("p.rego", ALLOW_ECHO),
        ("d/data.json", r#"{"a": 1, "b": [1, 2]}"#),
    ])
    .unwrap();
    let b = bundle(&[
        ("p.rego", ALLOW_ECHO),
        ("d/data.json", "{\n  \"b\": [1,2],\n  \"a\": 1\n}\n"),
    ])
    .unwrap();
    assert_eq!(a.policy_hash(), b.policy_hash());
    let c = bundle(&[
        ("p.rego", ALLOW_ECHO),
        ("d/data.json", r#"{"a": 2, "b": [1, 2]}"#),
    ])
    .unwrap();
    assert_ne!(a.policy_hash(), c.policy_hash());
    let d = bundle(&[
        ("p.rego", &format!("{ALLOW_ECHO}\n")),
        ("d/data.json", r#"{"a": 1, "b": [1, 2]}"#),
    ])
    .unwrap();
    assert_ne!(a.policy_hash(), d.policy_hash());
    let e = bundle(&[
        ("p.rego", ALLOW_ECHO),
        ("e/data.json", r#"{"a": 1, "b": [1, 2]}"#),
    ])
    .unwrap();
    assert_ne!(a.policy_hash(), e.policy_hash());
    assert_eq!(
        a.policy_hash().algorithm(),
        crate::hashing::Algorithm::Sha256
    );
}

#[test]
fn non_bundle_files_are_ignored() {
    let archive = tarball(&[
        ("p.rego", EntryType::Regular, ALLOW_ECHO.as_bytes()),
        ("README.md", EntryType::Regular, b"hello"),
    ]);
    let with_readme = Bundle::from_tar_gz(&archive, &BundleLimits::default()).unwrap();
    let without = bundle(&[("p.rego", ALLOW_ECHO)]).unwrap();
    assert_eq!(with_readme.policy_hash(), without.policy_hash());
}

#[test]
fn directory_bundles_refuse_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.rego"), ALLOW_ECHO).unwrap();
    let loaded = Bundle::from_path(dir.path(), &BundleLimits::default()).unwrap();
    assert_eq!(
        loaded.policy_hash(),
        bundle(&[("p.rego", ALLOW_ECHO)]).unwrap().policy_hash()
    );
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("data.json")).unwrap();
    let err = Bundle::from_path(dir.path(), &BundleLimits::default()).unwrap_err();
    assert_eq!(err.rule, BundleRule::EntryType);
    assert_eq!(err.file.as_deref(), Some("data.json"));
}

#[test]
fn clone_per_call_and_pool_agree() {
    let pooled = engine(&[("p.rego", ALLOW_ECHO)]);
    let cloned = engine(&[("p.rego", ALLOW_ECHO)]).with_reuse(EngineReuse::ClonePerCall);
    for tool in ["echo", "fs.read", "echo", ""] {
        assert_eq!(
            pooled.evaluate(input(tool)).allow,
            cloned.evaluate(input(tool)).allow
        );
    }
}

#[test]
fn evaluations_on_many_threads_agree() {
    let engine = engine(&[("p.rego", ALLOW_ECHO)]);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..200 {
                    let tool = if i % 2 == 0 { "echo" } else { "shell.exec" };
                    assert_eq!(engine.evaluate(input(tool)).allow, i % 2 == 0);
                }
            });
        }
    });
}

const AGENT: &str = r#"{
  "schema": "vedette.agent/v1",
  "name": "recon",
  "version": "1.0.0",
  "description": "looks around",
  "model": {"provider": "local", "name": "tiny"},
  "tools": [
    {"name": "echo", "description": "says it back", "args_schema": {"type": "object"}}
  ],
  "prompts": {"system": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
}"#;

#[test]
fn agent_manifest_fingerprint_ignores_cosmetics() {
    let a = AgentManifest::parse(AGENT.as_bytes()).unwrap();
    assert!(a.declares_tool("echo"));
    assert!(!a.declares_tool("shell.exec"));
    assert_eq!(
        a.behavioral_fingerprint().algorithm(),
        crate::hashing::Algorithm::Blake3
    );
    let relabelled = AGENT
        .replace("\"1.0.0\"", "\"1.0.1\"")
        .replace("looks around", "looks about");
    let b = AgentManifest::parse(relabelled.as_bytes()).unwrap();
    assert_eq!(a.behavioral_fingerprint(), b.behavioral_fingerprint());
    let changed = AGENT.replace("says it back", "says it twice");
    let c = AgentManifest::parse(changed.as_bytes()).unwrap();
    assert_ne!(a.behavioral_fingerprint(), c.behavioral_fingerprint());
}

#[test]
fn agent_manifest_errors_name_the_field() {
    let cases = [
        (
            AGENT.replace("\"name\": \"echo\"", "\"name\": 5"),
            "tools[0].name",
        ),
        (
            AGENT.replace(
                "\"args_schema\": {\"type\": \"object\"}",
                "\"args_schema\": []",
            ),
            "tools[0].args_schema",
        ),
        (
            AGENT.replace("sha256:0000", "sha256:ZZ00"),
            "prompts.system",
        ),
        (
            AGENT.replace(
                "\"description\": \"looks",
                "\"colour\": \"blue\", \"description\": \"looks",
            ),
            "colour",
        ),
        (
            AGENT.replace("vedette.agent/v1", "vedette.agent/v9"),
            "schema",
        ),
    ];
    for (text, at) in cases {
        let err = AgentManifest::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.at, at, "{err}");
    }
}

#[test]
fn unknown_builtin_reached_at_warm_up_is_refused_at_load() {
    let err = engine_error(&[(
        "p.rego",
        "package vedette\ndecision := {\"allow\": http.send({}).status_code == 200, \"reason\": \"r\"}\n",
    )]);
    assert_eq!(err.rule, BundleRule::Rego);
    assert!(
        err.detail.contains("could not find function http.send"),
        "{err}"
    );
}

#[test]
fn corrupt_gzip_checksum_is_refused() {
    let packed = bundle(&[("p.rego", &ALLOW_ECHO.repeat(20))])
        .unwrap()
        .to_tar_gz()
        .unwrap();
    // The last 8 bytes are the CRC-32 and length of the gzip member.
    let mut bad_crc = packed.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0x01;
    assert_eq!(read_error(&bad_crc).rule, BundleRule::Unreadable);
}

/// Decisions per second of the example-like policy with 1 and 2 threads for
/// each reuse strategy. A measurement, not a test: run it with
/// `cargo test --release --lib policy::tests::scaling_probe -- --ignored --nocapture`.
#[test]
#[ignore]
fn scaling_probe() {
    let policy = r#"package vedette
default decision := {"allow": false, "reason": "no"}
decision := {"allow": true, "reason": sprintf("%s is under %s", [input.path, data.root])} if {
    startswith(input.path, concat("", [data.root, "/"]))
    not contains(input.path, "..")
}
"#;
    let bundle = bundle(&[
        ("p.rego", policy),
        ("data.json", r#"{"root": "examples/data"}"#),
    ])
    .unwrap();
    let input = object([("path", Value::from("examples/data/hello.txt"))]);
    for reuse in [
        EngineReuse::ClonePerCall,
        EngineReuse::Pool,
        EngineReuse::Independent,
    ] {
        let engine = PolicyEngine::new(&bundle, EvalLimits::default())
            .unwrap()
            .with_reuse(reuse);
        let mut rates = Vec::new();
        for threads in [1usize, 2] {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let started = std::time::Instant::now();
            let total: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut done = 0;
                            while std::time::Instant::now() < deadline {
                                assert!(engine.evaluate(input.clone()).allow);
                                done += 1;
                            }
                            done
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            rates.push(total as f64 / started.elapsed().as_secs_f64());
        }
        println!(
            "{reuse:?}: 1 thread {:.0}/s, 2 threads {:.0}/s, scaling {:.2}",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
    }
}

#[test]
fn evaluator_panic_denies_and_the_engine_keeps_working() {
    let policy = r#"package vedette
default decision := {"allow": false, "reason": "default"}
decision := {"allow": test.explode(1), "reason": "exploded"} if input.tool == "boom"
decision := {"allow": true, "reason": "echo is harmless"} if input.tool == "echo"
"#;
    let explode = |_: Vec<Value>| -> anyhow::Result<Value> { panic!("deliberate test panic") };
    let engine =
        engine(&[("p.rego", policy)]).with_test_function("test.explode", 1, Box::new(explode));
    let decision = engine.evaluate(input("boom"));
    assert!(!decision.allow);
    assert_eq!(decision.fault, Some(Fault::Panic), "{}", decision.reason);
    // The panicked engine was dropped; the next call gets a sound one.
    let decision = engine.evaluate(input("echo"));
    assert!(decision.allow, "{}", decision.reason);
    assert_eq!(decision.fault, None);
}
