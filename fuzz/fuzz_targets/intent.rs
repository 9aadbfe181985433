//! Arbitrary bytes fed to the intent parser, as an adapter could send them:
//! it must return an intent or a reason, never panic; and an intent it
//! accepts, written back as JSON, must parse to the same intent.
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run intent --sanitizer none`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedette::gate::{parse_intent, IntentLimits};

fuzz_target!(|data: &[u8]| {
    let limits = IntentLimits {
        max_depth: 16,
        max_args_bytes: 4096,
        max_claims_bytes: 1024,
    };
    let Ok(intent) = parse_intent(data, &limits) else {
        return;
    };
    let mut fields = serde_json::Map::new();
    fields.insert("tool".into(), intent.tool.clone().into());
    fields.insert("args".into(), intent.args.clone().into());
    fields.insert("claims".into(), intent.claims.clone().into());
    if let Some(id) = &intent.request_id {
        fields.insert("request_id".into(), id.clone().into());
    }
    let again = serde_json::to_vec(&fields).expect("an intent encodes");
    assert_eq!(parse_intent(&again, &limits).as_ref(), Ok(&intent));
});
