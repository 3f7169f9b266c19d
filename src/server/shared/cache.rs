//! The result cache's answers in Redis, for every instance that shares it.
//!
//! A key is `sqlmcp:v1:answer:` and a hash of the server's version, the
//! tool, its canonical arguments and the caller's [`Grant`]: a caller whose
//! grant differs gets another key, so row-level security holds across
//! instances as it does in one; and no caller id, store list or argument
//! appears in clear. An entry lives for the cache's TTL (`SET … PX`), so an
//! answer is never older than it would be on one instance. Answers larger
//! than [`MAX_ANSWER_BYTES`] stay local.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Redis;
use crate::caller::Grant;
use crate::server::result_cache::Answer;

/// Answers larger than this, as JSON, are not shared: one large answer
/// would cost every instance that reads it more than running the query.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Where an instance's answers are shared.
pub struct SharedAnswers {
    redis: Arc<Redis>,
    ttl: Duration,
}

/// A kept answer as Redis holds it.
#[derive(Serialize, Deserialize)]
struct Stored {
    structured: Value,
    rows: Option<u64>,
    /// Whether a transaction opened (`Answer::visible` is `Some`).
    opened: bool,
    /// The stores it could see; `None`: every store.
    stores: Option<Vec<i32>>,
}

impl SharedAnswers {
    pub fn new(redis: Arc<Redis>, ttl: Duration) -> SharedAnswers {
        SharedAnswers { redis, ttl }
    }

    /// The key of `tool(arguments)` as `grant` sees it; `arguments` is
    /// already canonical.
    pub fn key(tool: &str, arguments: &str, grant: &Grant) -> String {
        let grant = match grant {
            Grant::Mapped(id) => format!("mapped:{id}"),
            Grant::Listed { stores, regions } => serde_json::json!({
                "stores": stores,
                "regions": regions,
            })
            .to_string(),
        };
        let hash = super::digest([
            env!("CARGO_PKG_VERSION").as_bytes(),
            tool.as_bytes(),
            arguments.as_bytes(),
            grant.as_bytes(),
        ]);
        format!("sqlmcp:v1:answer:{hash}")
    }

    /// The answer kept under `key` and how long it has left; `None` when
    /// there is none or Redis is down.
    pub async fn get(&self, key: &str) -> Option<(Answer, Duration)> {
        let (text, left): (Option<Vec<u8>>, i64) = self
            .redis
            .run("cache_get", |mut connection| async move {
                redis::pipe()
                    .get(key)
                    .pttl(key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        // expired between the two, or kept without an expiry by something else
        let left = Duration::from_millis(u64::try_from(left).ok().filter(|ms| *ms > 0)?);
        let stored: Stored = match serde_json::from_slice(&text?) {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(error = %err, "a shared answer does not parse; running the query");
                return None;
            }
        };
        let answer = Answer {
            result: rmcp::model::CallToolResult::structured(stored.structured),
            rows: stored.rows,
            visible: stored.opened.then_some(stored.stores),
        };
        Some((answer, left.min(self.ttl)))
    }

    /// Keeps `answer` under `key` for the TTL, unless it is too large.
    pub async fn put(&self, key: &str, answer: &Answer) {
        let Some(structured) = answer.result.structured_content.clone() else {
            return;
        };
        let stored = Stored {
            structured,
            rows: answer.rows,
            opened: answer.visible.is_some(),
            stores: answer.visible.clone().flatten(),
        };
        let text = serde_json::to_vec(&stored).expect("JSON values serialise");
        if text.len() > MAX_ANSWER_BYTES {
            tracing::debug!(
                bytes = text.len(),
                "an answer too large to share stays on this instance"
            );
            return;
        }
        let ttl = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .redis
            .run("cache_put", |mut connection| async move {
                connection
                    .set_options::<_, _, Option<String>>(
                        key,
                        text,
                        redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl)),
                    )
                    .await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::CallerId;

    #[test]
    fn keys_differ_by_tool_arguments_and_grant_and_name_no_caller() {
        let seattle = CallerId::for_tests("f47ac10b-58cc-4372-a567-0e02b2c3d479");
        let redmond = CallerId::for_tests("e7f8a9b0-c1d2-3e4f-5678-90abcdef1234");
        let key = SharedAnswers::key("top_products", r#"{"limit":5}"#, &Grant::Mapped(seattle));
        assert!(key.starts_with("sqlmcp:v1:answer:"), "{key}");
        assert!(!key.contains("f47ac10b"), "{key}");
        assert_eq!(
            key,
            SharedAnswers::key("top_products", r#"{"limit":5}"#, &Grant::Mapped(seattle))
        );
        for other in [
            SharedAnswers::key("top_products", r#"{"limit":5}"#, &Grant::Mapped(redmond)),
            SharedAnswers::key("top_products", r#"{"limit":6}"#, &Grant::Mapped(seattle)),
            SharedAnswers::key("low_stock", r#"{"limit":5}"#, &Grant::Mapped(seattle)),
            SharedAnswers::key(
                "top_products",
                r#"{"limit":5}"#,
                &Grant::Listed {
                    stores: [1].into(),
                    regions: Default::default(),
                },
            ),
        ] {
            assert_ne!(key, other);
        }
    }
}
