//! A tool's argument JSON Schema, compiled once per release.
//!
//! Validation runs on every call before the policy is asked, so the schema is
//! compiled when the release loads (an invalid schema fails the load, never a
//! call) and checked without the GIL. References to other documents are not
//! followed: the crate is built without file or network retrieval, so a
//! schema that needs one fails to compile instead of reaching out.

use jsonschema::Validator;
use serde_json::Value;

/// A compiled argument schema (the draft named by `$schema`, 2020-12 otherwise).
pub struct ArgsValidator {
    validator: Validator,
}

impl ArgsValidator {
    /// Compiles `schema`; the error says what is wrong with it.
    pub fn new(schema: &Value) -> Result<ArgsValidator, String> {
        jsonschema::validator_for(schema)
            .map(|validator| ArgsValidator { validator })
            .map_err(|err| format!("invalid args_schema: {err}"))
    }

    /// None when `args` fits; otherwise the first problem and where it is.
    pub fn problem(&self, args: &Value) -> Option<String> {
        let err = self.validator.validate(args).err()?;
        let at = err.instance_path().to_string();
        Some(if at.is_empty() {
            err.to_string()
        } else {
            format!("{err} (at {})", at.trim_start_matches('/'))
        })
    }

    /// Like [`problem`](Self::problem), with every value the message would
    /// quote written as `mask` instead (for arguments holding masked names).
    pub fn problem_masked(&self, args: &Value, mask: &str) -> Option<String> {
        let err = self.validator.validate(args).err()?;
        let at = err.instance_path().to_string();
        let message = err.masked_with(mask).to_string();
        Some(if at.is_empty() {
            message
        } else {
            format!("{message} (at {})", at.trim_start_matches('/'))
        })
    }

    /// Like [`problem`](Self::problem) for arguments given as JSON text.
    pub fn problem_json(&self, args_json: &[u8]) -> Option<String> {
        match serde_json::from_slice::<Value>(args_json) {
            Ok(args) => self.problem(&args),
            Err(err) => Some(format!("args are not JSON: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo() -> ArgsValidator {
        ArgsValidator::new(&json!({
            "type": "object",
            "properties": {"text": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
            "required": ["text"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn fitting_args_pass() {
        assert_eq!(echo().problem(&json!({"text": "hi", "n": 2})), None);
        assert_eq!(echo().problem_json(br#"{"text":"hi"}"#), None);
    }

    #[test]
    fn each_misfit_is_named() {
        let v = echo();
        let missing = v.problem(&json!({})).unwrap();
        assert!(
            missing.contains("\"text\" is a required property"),
            "{missing}"
        );
        let wrong = v.problem(&json!({"text": 5})).unwrap();
        assert!(wrong.contains("is not of type \"string\"") && wrong.ends_with("(at text)"));
        let extra = v.problem(&json!({"text": "a", "admin": true})).unwrap();
        assert!(extra.contains("admin"), "{extra}");
        let big = v.problem(&json!({"text": "a", "n": 4})).unwrap();
        assert!(big.contains("maximum") && big.ends_with("(at n)"), "{big}");
        assert!(v
            .problem_json(b"{")
            .unwrap()
            .starts_with("args are not JSON"));
    }

    #[test]
    fn an_invalid_schema_fails_to_compile() {
        let err = ArgsValidator::new(&json!({"type": "no-such-type"}))
            .err()
            .unwrap();
        assert!(err.starts_with("invalid args_schema"), "{err}");
    }

    #[test]
    fn remote_references_are_not_followed() {
        let schema = json!({"$ref": "https://example.com/schema.json"});
        assert!(ArgsValidator::new(&schema).is_err());
        let file = json!({"$ref": "file:///etc/passwd"});
        assert!(ArgsValidator::new(&file).is_err());
    }

    #[test]
    fn the_draft_follows_dollar_schema() {
        // draft-07 tuple `items`: the second item must be a string.
        let v = ArgsValidator::new(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"pair": {"items": [{"type": "integer"}, {"type": "string"}]}}
        }))
        .unwrap();
        assert_eq!(v.problem(&json!({"pair": [1, "a"]})), None);
        assert!(v.problem(&json!({"pair": [1, 2]})).is_some());
    }
}
