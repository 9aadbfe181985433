//! JSON read strictly: duplicate member names are refused at every depth
//! instead of resolved silently (serde_json keeps the last one), so two readers
//! of the same text can never see two different documents.
//! Canonical JSON and intents both read with it.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why strict reading failed.
#[derive(Debug)]
pub enum StrictJsonError {
    /// An object has this member name twice.
    DuplicateMember(String),
    /// Not one JSON document (serde_json's error: syntax, recursion limit, ...).
    Invalid(serde_json::Error),
}

/// Reads exactly one JSON document from `text`.
pub fn parse_strict(text: &str) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|err| match duplicate.into_inner() {
        Some(name) => StrictJsonError::DuplicateMember(name),
        None => StrictJsonError::Invalid(err),
    })
}

/// The seed and visitor: remembers the first duplicate name it meets.
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {value} is not finite")))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut array = Vec::with_capacity(items.size_hint().unwrap_or(0).min(64));
        while let Some(item) = items.next_element_seed(self)? {
            array.push(item);
        }
        Ok(Value::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = members.next_key::<String>()? {
            if object.contains_key(&name) {
                let message = format!("duplicate member name {name:?}");
                *self.duplicate.borrow_mut() = Some(name);
                return Err(de::Error::custom(message));
            }
            let item = members.next_value_seed(self)?;
            object.insert(name, item);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth_and_named() {
        for text in [r#"{"a": 1, "a": 2}"#, r#"{"x": [{"b": {"a": 1, "a": 1}}]}"#] {
            match parse_strict(text) {
                Err(StrictJsonError::DuplicateMember(name)) => assert_eq!(name, "a"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn one_document_or_an_error() {
        assert_eq!(
            parse_strict(r#" {"a": [1, 2.5, "x", null, true]} "#).unwrap(),
            serde_json::json!({"a": [1, 2.5, "x", null, true]})
        );
        for text in ["", "{", "{} {}", "[1,]", "NaN"] {
            assert!(
                matches!(parse_strict(text), Err(StrictJsonError::Invalid(_))),
                "{text:?}"
            );
        }
    }
}
