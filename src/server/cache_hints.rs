//! How long a client may reuse a result, and who may share it: the cache
//! hints of MCP 2026-07-28 (SEP-2549, `ttlMs` and `cacheScope`), in one
//! place for every list and read the server answers.
//!
//! The protocol defines them on `server/discover`, `tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list` and
//! `resources/read`, and nowhere else: a `tools/call` result is never
//! cached by the protocol, so it carries none.
//!
//! Choose by what the content depends on:
//! - on who asks (scopes filter it, or it is read as the caller): `private`,
//!   so that no shared cache ever serves one caller's answer to another;
//! - on the database's rows: `ttlMs` 0, since they change at any time;
//! - only on the binary (a restart changes it): [`UNTIL_RESTART_MS`].
//!
//! rmcp fills `ttlMs: 0, cacheScope: "private"` into any cacheable result
//! left without hints for a 2026-07-28 peer, and strips nothing for older
//! peers: the hints set here reach every peer, and a 2025 client ignores
//! them (its schema allows extra result fields).
//!
//! ```ignore
//! use super::cache_hints::{self, Cacheable};
//! Ok(ListToolsResult::with_all_items(tools).with_hint(cache_hints::CALLERS_LIST))
//! ```

use rmcp::model::{
    CacheScope, DiscoverResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, ReadResourceResult,
};

/// How long a result that only a restart (a new binary) changes stays fresh:
/// also how long a client may keep using a list after its caller's scopes
/// changed (a call the new scopes refuse is still refused, with the reason).
pub const UNTIL_RESTART_MS: u64 = 5 * 60 * 1000;

/// A result's `ttlMs` and `cacheScope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub ttl_ms: u64,
    pub scope: CacheScope,
}

/// The same for every caller and fixed until a restart: `server/discover`
/// (versions, capabilities, instructions), and any list or read built into
/// the binary that no caller's identity or scopes filter.
pub const SHARED_UNTIL_RESTART: Hint = Hint {
    ttl_ms: UNTIL_RESTART_MS,
    scope: CacheScope::Public,
};

/// Fixed until a restart but filtered by the caller: `tools/list` (the
/// caller's scopes choose the tools), and any list the scopes or the
/// identity filter.
pub const CALLERS_LIST: Hint = Hint {
    ttl_ms: UNTIL_RESTART_MS,
    scope: CacheScope::Private,
};

/// Read from the database as the caller: the rows change at any time, and
/// row-level security makes them the caller's own. Not to be reused.
pub const CALLERS_DATA: Hint = Hint {
    ttl_ms: 0,
    scope: CacheScope::Private,
};

/// A result that carries cache hints.
pub trait Cacheable: Sized {
    fn with_hint(self, hint: Hint) -> Self;
}

macro_rules! cacheable {
    ($($result:ty),*) => {$(
        impl Cacheable for $result {
            fn with_hint(self, hint: Hint) -> Self {
                self.with_ttl_ms(hint.ttl_ms).with_cache_scope(hint.scope)
            }
        }
    )*};
}

cacheable!(
    DiscoverResult,
    ListToolsResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ReadResourceResult
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reach_the_wire_as_the_protocol_names_them() {
        let listed = ListToolsResult::with_all_items(vec![]).with_hint(CALLERS_LIST);
        let wire = serde_json::to_value(&listed).unwrap();
        assert_eq!(wire["ttlMs"], 300_000);
        assert_eq!(wire["cacheScope"], "private");
        let read = ReadResourceResult::new(vec![]).with_hint(CALLERS_DATA);
        let wire = serde_json::to_value(&read).unwrap();
        assert_eq!(
            (wire["ttlMs"].as_u64(), wire["cacheScope"].as_str()),
            (Some(0), Some("private"))
        );
        let discover =
            DiscoverResult::new(vec![], Default::default()).with_hint(SHARED_UNTIL_RESTART);
        assert_eq!(
            serde_json::to_value(&discover).unwrap()["cacheScope"],
            "public"
        );
    }
}
