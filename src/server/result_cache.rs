//! An optional cache of the curated tools' results (`--result-cache-ttl-ms`),
//! off by default.
//!
//! An entry is keyed by the tool, its arguments (with object keys in a
//! canonical order) and what the caller may see ([`Grant`]): row-level
//! security gives callers different rows, so an answer is never served to
//! a caller with another grant. An entry lives for the TTL, so an answer
//! may be that much older than the data. Only successful answers are kept.
//! Concurrent calls with the same key wait for one database query instead
//! of each running their own.
//!
//! With `--redis-url`, answers are also shared with the other instances
//! ([`super::shared::cache`]): a miss here asks Redis before the database,
//! and an answer the database gave is stored there too. This cache stays in
//! front of Redis: a hit here costs no round trip, concurrent calls still
//! wait for one query, and it serves alone while Redis is down. An answer
//! that came from Redis is kept here only for the life it had left there,
//! so no instance serves an answer older than the TTL.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::CallToolResult;
use serde_json::Value;

use super::shared::cache::SharedAnswers;
use crate::caller::Grant;
use crate::tools::ToolError;

/// How long answers are kept, and how much memory they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub ttl: Duration,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tool: String,
    arguments: String,
    grant: Grant,
}

/// A kept answer, as the client receives it, and its row count and the
/// stores its call could see, for the logs.
#[derive(Debug, Clone)]
pub struct Answer {
    pub result: CallToolResult,
    pub rows: Option<u64>,
    /// As the database resolved them (`None` when no transaction opened).
    pub visible: Option<crate::db::Visible>,
}

impl Answer {
    /// Bytes the answer takes, roughly: its JSON text twice (the text
    /// content and the structured content).
    fn weight(&self) -> usize {
        let text = self
            .result
            .content
            .first()
            .and_then(|content| content.as_text())
            .map_or(0, |text| text.text.len());
        2 * text + 128
    }
}

/// Whether a call was answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

/// An answer as this cache keeps it.
#[derive(Clone)]
struct Kept {
    answer: Arc<Answer>,
    /// How long it is kept: the TTL, or what it had left in Redis.
    life: Duration,
    /// It came from another instance, through Redis.
    shared: bool,
}

/// Each entry lives for its own [`Kept::life`].
struct Life;

impl moka::Expiry<Key, Kept> for Life {
    fn expire_after_create(
        &self,
        _key: &Key,
        kept: &Kept,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(kept.life)
    }
}

pub struct ResultCache {
    entries: moka::future::Cache<Key, Kept>,
    ttl: Duration,
    shared: Option<SharedAnswers>,
}

impl ResultCache {
    /// A cache of this instance's own, sharing through `redis` when given.
    pub fn new(settings: Settings, redis: Option<Arc<super::shared::Redis>>) -> ResultCache {
        let entries = moka::future::Cache::builder()
            .expire_after(Life)
            .max_capacity(settings.max_bytes)
            .weigher(|key: &Key, kept: &Kept| {
                let bytes = key.tool.len()
                    + key.arguments.len()
                    + key.grant.weight()
                    + kept.answer.weight();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        ResultCache {
            entries,
            ttl: settings.ttl,
            shared: redis.map(|redis| SharedAnswers::new(redis, settings.ttl)),
        }
    }

    /// The kept answer to `tool(arguments)` for `grant`, or `answer()`'s,
    /// which is kept when it succeeds.
    pub async fn get_or_answer<F>(
        &self,
        tool: &str,
        arguments: &Value,
        grant: &Grant,
        answer: F,
    ) -> Result<(Arc<Answer>, Lookup), ToolError>
    where
        F: Future<Output = Result<Answer, ToolError>>,
    {
        let key = Key {
            tool: tool.to_owned(),
            arguments: canonical(arguments),
            grant: grant.clone(),
        };
        let shared = self
            .shared
            .as_ref()
            .map(|shared| (shared, SharedAnswers::key(tool, &key.arguments, grant)));
        let ttl = self.ttl;
        let entry = self
            .entries
            .entry(key)
            .or_try_insert_with(async {
                if let Some((shared, key)) = &shared
                    && let Some((answer, left)) = shared.get(key).await
                {
                    return Ok(Kept {
                        answer: Arc::new(answer),
                        life: left,
                        shared: true,
                    });
                }
                let answer = answer.await?;
                if let Some((shared, key)) = &shared {
                    shared.put(key, &answer).await;
                }
                Ok(Kept {
                    answer: Arc::new(answer),
                    life: ttl,
                    shared: false,
                })
            })
            .await
            .map_err(|err: Arc<ToolError>| (*err).clone())?;
        let lookup = if entry.is_fresh() && !entry.value().shared {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        Ok((entry.into_value().answer, lookup))
    }
}

/// `value` as JSON text with every object's keys in order, so that the same
/// arguments in another order share an entry. No arguments and `{}` are the
/// same.
fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (name, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(name.as_str()).to_string());
                    out.push(':');
                    write(value, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    match value {
        Value::Null => out.push_str("{}"),
        other => write(other, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_in_any_order_are_the_same_key() {
        assert_eq!(
            canonical(&json!({"b": 1, "a": {"d": [1, {"y": 2, "x": 1}], "c": "s"}})),
            r#"{"a":{"c":"s","d":[1,{"x":1,"y":2}]},"b":1}"#
        );
        assert_eq!(canonical(&Value::Null), canonical(&json!({})));
        assert_ne!(
            canonical(&json!({"sku": "A"})),
            canonical(&json!({"sku": "a"}))
        );
        assert_eq!(canonical(&json!({"k\"ey": "v"})), r#"{"k\"ey":"v"}"#);
    }
}
