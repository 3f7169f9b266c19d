//! Finds a repeated key in any object of a JSON document.
//!
//! serde_json keeps the last value of a repeated key, while a log, a proxy
//! or another parser may read the first, so one request could mean two
//! things. The server refuses such a request before it is parsed for use.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The first repeated key of `json` and where it is (`duplicate key "a" in
/// params.arguments`); `None` when every object's keys are distinct, or
/// when `json` is not JSON at all (the parser that follows says so).
pub fn repeated_key(json: &[u8]) -> Option<String> {
    let mut found = Found::default();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let walked = Walk { found: &mut found }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (walked, found.key) {
        (Err(_), Some(key)) => {
            let place = if found.trail.is_empty() {
                "the top-level object".to_owned()
            } else {
                found
                    .trail
                    .iter()
                    .rev()
                    .fold(String::new(), |mut path, step| {
                        match step {
                            Step::Key(key) if path.is_empty() => path.push_str(key),
                            Step::Key(key) => {
                                path.push('.');
                                path.push_str(key);
                            }
                            Step::Index(index) => path.push_str(&format!("[{index}]")),
                        }
                        path
                    })
            };
            Some(format!("duplicate key {key} in {place}"))
        }
        _ => None,
    }
}

/// What the walk found: the repeated key (quoted, as JSON), and the way
/// to its object, innermost step first (collected only on the way out).
#[derive(Default)]
struct Found {
    key: Option<String>,
    trail: Vec<Step>,
}

enum Step {
    Key(String),
    Index(usize),
}

/// Keys longer than this are cut in messages.
const SHOWN_KEY_CHARS: usize = 64;

fn shown(text: &str) -> String {
    let cut: String = text.chars().take(SHOWN_KEY_CHARS).collect();
    let quoted = serde_json::to_string(&cut).expect("a string serialises");
    if cut.len() < text.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

/// Visits every value; fails at the first object that repeats a key.
struct Walk<'a> {
    found: &'a mut Found,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            match items.next_element_seed(Walk {
                found: &mut *self.found,
            }) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(err) => {
                    self.found.trail.push(Step::Index(index));
                    return Err(err);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = entries.next_key_seed(Key)? {
            if seen.contains(&key) {
                self.found.key = Some(shown(&key));
                return Err(de::Error::custom("duplicate key"));
            }
            if let Err(err) = entries.next_value_seed(Walk {
                found: &mut *self.found,
            }) {
                self.found.trail.push(Step::Key(shown_plain(&key)));
                return Err(err);
            }
            seen.insert(key);
        }
        Ok(())
    }
}

/// A key on the way to the repeated one, unquoted unless it needs quotes.
fn shown_plain(key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().count() <= SHOWN_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain { key.to_owned() } else { shown(key) }
}

/// An object key, borrowed from the input unless it has escapes (so that
/// `"a"` and `"\u0061"` are the same key, as serde_json sees them).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::repeated_key;

    #[test]
    fn finds_a_repeated_key_at_any_depth_and_names_it() {
        let cases = [
            (
                r#"{"a": 1, "a": 2}"#,
                r#"duplicate key "a" in the top-level object"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sales_query","arguments":{"postgresql_query":"SELECT 1","postgresql_query":"SELECT 2"}}}"#,
                r#"duplicate key "postgresql_query" in params.arguments"#,
            ),
            (
                r#"{"x": [1, {"ok": true}, {"b": {"c": 1, "c": 2}}]}"#,
                r#"duplicate key "c" in x[2].b"#,
            ),
            (
                r#"[{"a": 1}, {"a": 1, "a": 1}]"#,
                r#"duplicate key "a" in [1]"#,
            ),
            (
                r#"{"a": 1, "\u0061": 2}"#,
                r#"duplicate key "a" in the top-level object"#,
            ),
            (
                r#"{"odd key": {"\n": 1, "\n": 2}}"#,
                r#"duplicate key "\n" in "odd key""#,
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(repeated_key(json.as_bytes()).as_deref(), Some(expected));
        }
    }

    #[test]
    fn lets_distinct_keys_and_non_json_through() {
        for json in [
            r#"{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}], "c": null, "d": -1.5e3, "e": "\u00e9"}"#,
            "[]",
            "42",
            "",
            "not json",
            r#"{"a": 1, "b""#,
            r#"{"a": 1} trailing"#,
        ] {
            assert_eq!(repeated_key(json.as_bytes()), None, "{json}");
        }
    }
}
