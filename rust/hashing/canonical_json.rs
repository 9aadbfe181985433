//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The behavioral fingerprint is a hash of JSON, so the JSON must have one
//! spelling: object members sorted by their UTF-16 code units, no whitespace,
//! strings escaped as ECMAScript's `JSON.stringify` does, and numbers written
//! as ECMAScript writes IEEE-754 doubles. Inputs that JCS cannot represent
//! exactly (NaN, infinities, integers whose canonical form would change them,
//! duplicate member names)
//! are refused rather than silently changed.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::strict_json::{parse_strict, StrictJsonError};

/// Deepest nesting accepted; deeper input is refused instead of exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a value has no canonical JSON form: it is refused rather than changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanonicalJsonError {
    /// A NaN or an infinity: JSON has no spelling for it.
    #[error("number {0} is not finite: canonical JSON has no NaN or Infinity")]
    NotFinite(f64),
    /// An integer (its decimal digits) whose nearest double would read back as another number.
    #[error(
        "integer {0} is not exactly an IEEE-754 double, so its canonical JSON form \
         would change it (RFC 8785 numbers are doubles); pass it as a string"
    )]
    IntegerNotExact(String),
    /// Nesting deeper than [`MAX_DEPTH`] levels.
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An object names this member twice (in text given to [`canonical_json_from_str`]).
    #[error("duplicate object member name {0:?}")]
    DuplicateKey(String),
    /// The text is not JSON, or holds a number that cannot be read; the message says where.
    #[error("invalid JSON text: {0}")]
    InvalidJson(String),
}

/// Canonical JSON bytes of a value.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut out = Vec::with_capacity(128);
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// Parses JSON text strictly (duplicate member names refused) and canonicalizes it.
pub fn canonical_json_from_str(text: &str) -> Result<Vec<u8>, CanonicalJsonError> {
    let value = parse_strict(text).map_err(|err| match err {
        StrictJsonError::DuplicateMember(name) => CanonicalJsonError::DuplicateKey(name),
        StrictJsonError::Invalid(err) => CanonicalJsonError::InvalidJson(err.to_string()),
    })?;
    canonical_json(&value)
}

fn write_value(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalJsonError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalJsonError::TooDeep);
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out)?,
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(members) => write_object(members, out, depth)?,
    }
    Ok(())
}

fn write_object(
    members: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), CanonicalJsonError> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|a, b| compare_member_names(a.0, b.0));
    out.push(b'{');
    for (i, (name, item)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(item, out, depth + 1)?;
    }
    out.push(b'}');
    Ok(())
}

/// Numbers in JSON text are read as RFC 8785 reads them: as the nearest
/// double, whatever digits they were written with.
fn write_number(number: &Number, out: &mut Vec<u8>) -> Result<(), CanonicalJsonError> {
    if let Some(integer) = number.as_i64() {
        return write_f64(integer as f64, out);
    }
    if let Some(integer) = number.as_u64() {
        return write_f64(integer as f64, out);
    }
    match number.as_f64() {
        Some(float) => write_f64(float, out),
        None => Err(CanonicalJsonError::InvalidJson(format!(
            "unrepresentable number {number}"
        ))),
    }
}

/// Largest magnitude below which every integer is exactly a double (2^53).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Writes an integer the caller holds exactly (a Python `int`, say), given as
/// its decimal text.
///
/// RFC 8785 numbers are doubles, and beyond ±2^53 the canonical form of the
/// nearest double can have other digits (2^64 is written 18446744073709552000),
/// which would silently change the value. Such an integer is accepted only if
/// its digits already are the canonical form of a double; otherwise it is
/// refused, so every accepted value reads back as itself.
pub fn write_exact_integer(decimal: &str, out: &mut Vec<u8>) -> Result<(), CanonicalJsonError> {
    let not_exact = || CanonicalJsonError::IntegerNotExact(decimal.to_string());
    let value: f64 = decimal.parse().map_err(|_| not_exact())?;
    if !value.is_finite() {
        return Err(not_exact());
    }
    let mut buffer = ryu_js::Buffer::new();
    let canonical = buffer.format_finite(value);
    let safe = decimal
        .strip_prefix('-')
        .unwrap_or(decimal)
        .parse::<u64>()
        .is_ok_and(|magnitude| magnitude <= MAX_SAFE_INTEGER);
    if !safe && canonical != decimal {
        return Err(not_exact());
    }
    out.extend_from_slice(canonical.as_bytes());
    Ok(())
}

/// Writes a double the way ECMAScript's `Number.prototype.toString` does.
pub fn write_f64(value: f64, out: &mut Vec<u8>) -> Result<(), CanonicalJsonError> {
    if !value.is_finite() {
        return Err(CanonicalJsonError::NotFinite(value));
    }
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(value).as_bytes());
    Ok(())
}

/// Writes a JSON string escaped as `JSON.stringify` does: the two-character
/// escapes where they exist, `\u00xx` for other controls, everything else as UTF-8.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\x0c' => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        plain_from = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// Orders member names by their UTF-16 code units, as RFC 8785 §3.2.3 requires
/// (this differs from UTF-8 byte order for characters above U+FFFF).
pub fn compare_member_names(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(canonical_json_from_str(text).unwrap()).unwrap()
    }

    fn number(bits: u64) -> String {
        let mut out = Vec::new();
        write_f64(f64::from_bits(bits), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc8785_primitive_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn rfc8785_sorting_example_orders_by_utf16() {
        let input = r#"{
          "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control\u007f",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let names: Vec<String> = serde_json::from_str::<Vec<String>>(
            r#"["\r","1","\u0080","\u00f6","\u20ac","\ud83d\ude00","\ufb33"]"#,
        )
        .unwrap();
        let output = canon(input);
        let mut last = 0;
        for name in names {
            let mut quoted = Vec::new();
            write_string(&name, &mut quoted);
            let at = output.find(std::str::from_utf8(&quoted).unwrap()).unwrap();
            assert!(at >= last, "{name:?} out of order in {output}");
            last = at;
        }
        assert!(output.contains("\"Control\u{7f}\""), "DEL is not escaped");
    }

    #[test]
    fn rfc8785_number_table() {
        // RFC 8785 appendix B: IEEE-754 bit patterns and their canonical form.
        let table = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in table {
            assert_eq!(number(bits), expected, "bits {bits:#018x}");
        }
        for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
            let mut out = Vec::new();
            assert!(write_f64(f64::from_bits(bits), &mut out).is_err());
        }
    }

    #[test]
    fn refuses_what_it_cannot_represent() {
        assert_eq!(
            canonical_json_from_str(r#"{"a":1,"a":2}"#),
            Err(CanonicalJsonError::DuplicateKey("a".into()))
        );
        assert_eq!(canon("-9007199254740992"), "-9007199254740992");
        assert!(matches!(
            canonical_json_from_str("{} x"),
            Err(CanonicalJsonError::InvalidJson(_))
        ));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(canonical_json_from_str(&deep).is_err());
    }

    #[test]
    fn json_text_numbers_are_doubles() {
        assert_eq!(canon("9007199254740993"), "9007199254740992");
        assert_eq!(canon("18446744073709551616"), "18446744073709552000");
        assert_eq!(canon("1E2"), "100");
    }

    #[test]
    fn exact_integers_are_kept_or_refused() {
        let write = |decimal: &str| {
            let mut out = Vec::new();
            write_exact_integer(decimal, &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        assert_eq!(write("9007199254740992").unwrap(), "9007199254740992");
        assert_eq!(write("-9007199254740992").unwrap(), "-9007199254740992");
        assert_eq!(write("9007199254740994").unwrap(), "9007199254740994");
        assert_eq!(
            write("18446744073709552000").unwrap(),
            "18446744073709552000"
        );
        assert_eq!(write("-0").unwrap(), "0");
        for refused in [
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551616",
        ] {
            assert!(write(refused).is_err(), "{refused}");
        }
        assert!(write(&"9".repeat(400)).is_err());
    }

    #[test]
    fn whitespace_and_member_order_do_not_matter() {
        assert_eq!(
            canon(r#"{ "b" : [1, {"y":2,"x":1}], "a":"\u00e9" }"#),
            canon(r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#)
        );
    }
}
