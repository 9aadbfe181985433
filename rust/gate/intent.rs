//! An intent parsed strictly from untrusted bytes: the one parser every path uses.
//!
//! Strict means: one JSON object with only the fields `tool`, `args`,
//! `claims` and `request_id`; no duplicate member names at any depth (two
//! parsers must never see two different intents in one body); no NaN or
//! Infinity; no lone surrogates; no integer outside the 64-bit range (it
//! could not reach the policy unrounded); bounded nesting and size. Every
//! refusal says what was wrong.

use serde_json::{Map, Value};

use crate::hashing::{parse_strict, StrictJsonError};
use crate::policy::{is_name, NAME_RULE};

/// Longest `request_id`, in characters.
pub(super) const MAX_REQUEST_ID_CHARS: usize = 128;
const FIELDS: [&str; 4] = ["args", "claims", "request_id", "tool"];

/// Bounds on an intent (the `[intent]` table of the config).
#[derive(Clone, Copy, Debug)]
pub struct IntentLimits {
    /// Deepest nesting of `args` and of `claims`: the field itself is level 1, each value inside
    /// one level deeper.
    pub max_depth: usize,
    /// Largest `args`, in bytes of compact JSON.
    pub max_args_bytes: usize,
    /// Largest `claims`, in bytes of compact JSON.
    pub max_claims_bytes: usize,
}

/// One tool call an agent asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    /// The tool asked for: a name by the policy's name rule.
    pub tool: String,
    /// The tool's arguments (an empty object when the body has none); checked against the tool's
    /// argument schema.
    pub args: Map<String, Value>,
    /// Untrusted: handed to the policy as `input.claims`, never used for identity.
    pub claims: Map<String, Value>,
    /// The caller's own id for the request (1 to 128 characters); a repeat within the retry window
    /// gets the first answer.
    pub request_id: Option<String>,
}

/// Why an intent was refused (the message is the reason given to the caller).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIntent(pub String);

fn invalid(message: impl Into<String>) -> InvalidIntent {
    InvalidIntent(message.into())
}

/// Parses and checks a request body.
pub fn parse_intent(body: &[u8], limits: &IntentLimits) -> Result<Intent, InvalidIntent> {
    let text = std::str::from_utf8(body)
        .map_err(|err| invalid(format!("body is not UTF-8 (byte {})", err.valid_up_to())))?;
    let value = parse_strict(text).map_err(|err| match err {
        StrictJsonError::DuplicateMember(name) => {
            invalid(format!("duplicate member name {}", py_repr(&name)))
        }
        StrictJsonError::Invalid(err) => refusal(text, &err),
    })?;
    if let Some(literal) = oversized_integer(text) {
        return Err(invalid(format!(
            "integer {} is outside the 64-bit range",
            shorten(literal)
        )));
    }
    intent_from_value(value, limits, body.len())
}

fn intent_from_value(
    value: Value,
    limits: &IntentLimits,
    body_bytes: usize,
) -> Result<Intent, InvalidIntent> {
    let Value::Object(mut fields) = value else {
        return Err(invalid(format!(
            "body must be a JSON object, got {}",
            json_type(&value)
        )));
    };
    if let Some(unknown) = fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
        return Err(invalid(format!(
            "unknown field {} (allowed: args, claims, request_id, tool)",
            py_repr(unknown)
        )));
    }
    let tool = match fields.remove("tool") {
        Some(Value::String(tool)) if is_name(&tool) => tool,
        other => {
            return Err(invalid(format!(
                "tool must be a name ({NAME_RULE}), got {}",
                shown(other.as_ref())
            )))
        }
    };
    let args = object_field(
        fields.remove("args"),
        "args",
        limits.max_args_bytes,
        limits,
        body_bytes,
    )?;
    let claims = object_field(
        fields.remove("claims"),
        "claims",
        limits.max_claims_bytes,
        limits,
        body_bytes,
    )?;
    let request_id = match fields.remove("request_id") {
        None => None,
        Some(Value::String(id)) if (1..=MAX_REQUEST_ID_CHARS).contains(&id.chars().count()) => {
            Some(id)
        }
        Some(_) => {
            return Err(invalid(format!(
                "request_id must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters"
            )))
        }
    };
    Ok(Intent {
        tool,
        args,
        claims,
        request_id,
    })
}

fn object_field(
    item: Option<Value>,
    name: &str,
    max_bytes: usize,
    limits: &IntentLimits,
    body_bytes: usize,
) -> Result<Map<String, Value>, InvalidIntent> {
    let members = match item {
        None => return Ok(Map::new()),
        Some(Value::Object(members)) => members,
        Some(other) => {
            return Err(invalid(format!(
                "{name} must be a JSON object, got {}",
                json_type(&other)
            )))
        }
    };
    check_depth(&members, name, limits.max_depth)?;
    // A field's JSON cannot be longer than the body it came from.
    if body_bytes > max_bytes {
        let size = serde_json::to_vec(&members).map_or(usize::MAX, |json| json.len());
        if size > max_bytes {
            return Err(invalid(format!(
                "{name} is {size} bytes of JSON, over the {max_bytes}-byte limit"
            )));
        }
    }
    Ok(members)
}

/// The field itself is level 1; each value inside an object or array is one deeper.
fn check_depth(
    root: &Map<String, Value>,
    name: &str,
    max_depth: usize,
) -> Result<(), InvalidIntent> {
    if max_depth < 1 {
        return Err(invalid(format!(
            "{name} nests deeper than {max_depth} levels"
        )));
    }
    let mut stack: Vec<(&Value, usize)> = root.values().map(|value| (value, 2)).collect();
    while let Some((node, depth)) = stack.pop() {
        if depth > max_depth {
            return Err(invalid(format!(
                "{name} nests deeper than {max_depth} levels"
            )));
        }
        match node {
            Value::Object(members) => stack.extend(members.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Turns a parser error into the reason a caller reads.
fn refusal(text: &str, err: &serde_json::Error) -> InvalidIntent {
    let message = err.to_string();
    if message.contains("recursion limit") {
        return invalid("body nests too deeply");
    }
    if message.contains("surrogate")
        || (message.contains("hex escape") && has_surrogate_escape(text))
    {
        return invalid(format!(
            "body contains a lone surrogate (\\ud800-\\udfff): {message}"
        ));
    }
    // serde_json's column may fall inside a multi-byte character: no text then.
    let rest = text
        .get(byte_offset(text, err.line(), err.column())..)
        .unwrap_or("");
    for constant in ["NaN", "Infinity", "-Infinity"] {
        if rest.starts_with(constant) || rest.get(1..).is_some_and(|r| r.starts_with(constant)) {
            return invalid(format!("{constant} is not a JSON number"));
        }
    }
    invalid(format!("body is not JSON: {message}"))
}

/// Whether `text` holds a `\uD800`-`\uDFFF` escape (serde_json reports a
/// lone one as a broken hex escape).
fn has_surrogate_escape(text: &str) -> bool {
    text.as_bytes().windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    })
}

/// The byte offset of serde_json's 1-based (line, column) position.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column).saturating_sub(1)
}

/// The first integer literal (outside strings) that does not fit in i64 or
/// u64. serde_json would read it as a rounded float; it is refused instead.
fn oversized_integer(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut in_string = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = index;
            while index < bytes.len()
                && (bytes[index].is_ascii_digit()
                    || matches!(bytes[index], b'-' | b'+' | b'.' | b'e' | b'E'))
            {
                index += 1;
            }
            let literal = &text[start..index];
            let is_integer = !literal.contains(['.', 'e', 'E']);
            if is_integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                return Some(literal);
            }
            continue;
        }
        index += 1;
    }
    None
}

fn shorten(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        format!("{}...", &text[..37])
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Python's `repr` would show it, cut to 80 characters.
fn shown(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => "None".to_string(),
        Some(Value::Bool(true)) => "True".to_string(),
        Some(Value::Bool(false)) => "False".to_string(),
        Some(Value::String(text)) => py_repr(text),
        Some(other) => other.to_string(),
    };
    if text.chars().count() <= 80 {
        text
    } else {
        format!("{}...", text.chars().take(77).collect::<String>())
    }
}

/// A string quoted the way Python's `repr` quotes it (the form reasons use).
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
