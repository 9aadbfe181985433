//! Masked argument and claim names (`evidence.mask_args`): their values are
//! written as `"***"` in evidence and never appear in a reason shown to an
//! adapter.
//!
//! Names match without regard to ASCII case (`password` masks `Password` and
//! `PASSWORD`) at any depth of `args` and `claims`; everything under a masked
//! member is masked with it. The rule is in docs/contracts.md, "Evidence records".

use serde_json::{Map, Value};

/// What a masked value is written as, in records and reasons.
pub const MASK: &str = "***";

/// The mask list, compared without regard to ASCII case.
#[derive(Clone, Debug, Default)]
pub struct Mask {
    names: Vec<String>,
}

impl Mask {
    /// A mask of `names` (the `evidence.mask_args` setting), compared without regard to ASCII case.
    pub fn new(names: impl IntoIterator<Item = String>) -> Mask {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        Mask { names }
    }

    /// Whether no name is masked (then nothing is scrubbed and schema errors may quote values).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether a member called `name` is masked, ignoring ASCII case.
    pub fn matches(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|masked| masked.eq_ignore_ascii_case(name))
    }

    /// The text of every scalar held under a masked name in `members`, at any
    /// depth, longest first: what must not be echoed back.
    pub fn hidden_values(&self, members: &[&Map<String, Value>]) -> Vec<String> {
        let mut found = Vec::new();
        if self.is_empty() {
            return found;
        }
        for object in members {
            self.collect(object, &mut found);
        }
        found.retain(|text| !text.is_empty());
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        found
    }

    fn collect(&self, members: &Map<String, Value>, found: &mut Vec<String>) {
        for (name, value) in members {
            if self.matches(name) {
                scalars(value, found);
            } else {
                match value {
                    Value::Object(inner) => self.collect(inner, found),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(inner) = item {
                                self.collect(inner, found);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn scalars(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Number(number) => found.push(number.to_string()),
        Value::Bool(_) | Value::Null => {}
        Value::Array(items) => items.iter().for_each(|item| scalars(item, found)),
        Value::Object(members) => members.values().for_each(|item| scalars(item, found)),
    }
}

/// `text` with every occurrence of each hidden value replaced by `***`.
pub fn scrub(text: &str, hidden: &[String]) -> String {
    let mut out = text.to_string();
    for value in hidden {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(members) => members,
            _ => unreachable!(),
        }
    }

    #[test]
    fn names_match_without_regard_to_case() {
        let mask = Mask::new(["Password".to_string()]);
        assert!(mask.matches("password") && mask.matches("PASSWORD") && mask.matches("Password"));
        assert!(!mask.matches("passwords"));
    }

    #[test]
    fn hidden_values_are_found_at_any_depth_longest_first() {
        let mask = Mask::new(["secret".to_string()]);
        let args = object(json!({
            "a": {"SECRET": "hunter2"},
            "list": [{"secret": {"pin": 1234, "words": ["abc", true]}}],
            "secret": "x",
            "plain": "hunter2-not-masked-here"
        }));
        let hidden = mask.hidden_values(&[&args]);
        assert_eq!(hidden, ["hunter2", "1234", "abc", "x"]);
        assert_eq!(scrub("pin 1234 for hunter2", &hidden), "pin *** for ***");
    }

    #[test]
    fn nothing_is_hidden_without_a_mask() {
        let args = object(json!({"password": "p"}));
        assert!(Mask::default().hidden_values(&[&args]).is_empty());
    }
}
