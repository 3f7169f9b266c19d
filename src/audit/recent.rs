//! The last calls of this process, for the workbench's list of recent calls
//! (`sqlmcp serve --ui`): the audit log's own entries as each call ends,
//! kept in a ring of fixed size, without their arguments and never with
//! result data.
//!
//! Who sees which: a caller who may see every store (head office) sees every
//! call; anyone else only the calls made under their own credential (the
//! same method, issuer and subject), so that one store's manager never
//! learns what another's asked.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::{Entry, Outcome};
use crate::caller::{Caller, Grant, Principal};

/// How many calls the ring keeps when `--ui` is on.
pub const CAPACITY: usize = 200;

/// One call as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentCall {
    pub at: chrono::DateTime<chrono::Utc>,
    pub tool: String,
    /// `header`, `jwt`, `configured` or `default`; `None`: no caller.
    pub auth_method: Option<&'static str>,
    /// Who called: the id, or a token's subject; `None`: no caller.
    pub caller: Option<String>,
    pub issuer: Option<String>,
    pub outcome: Outcome,
    pub error_class: Option<&'static str>,
    pub row_count: Option<u64>,
    pub duration_ms: f64,
    pub cached: bool,
}

/// The ring.
pub struct RecentCalls {
    capacity: usize,
    calls: Mutex<VecDeque<RecentCall>>,
}

impl RecentCalls {
    pub fn new(capacity: usize) -> RecentCalls {
        RecentCalls {
            capacity: capacity.max(1),
            calls: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
        }
    }

    /// Keeps the ended call `entry`, dropping the oldest when full.
    pub(super) fn push(&self, entry: &Entry) {
        let call = RecentCall {
            at: entry.at,
            tool: entry.tool.clone(),
            auth_method: entry.auth_method,
            caller: entry.subject.clone(),
            issuer: entry.issuer.clone(),
            outcome: entry.outcome,
            error_class: entry.error_class,
            row_count: entry.row_count,
            duration_ms: entry.duration_ms,
            cached: entry.cached,
        };
        let mut calls = self.calls.lock().expect("never poisoned");
        if calls.len() == self.capacity {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The calls `caller` may see, newest first, and whether those are
    /// everyone's.
    pub fn visible_to(&self, caller: &Caller) -> (Vec<RecentCall>, bool) {
        let everyone = caller.grant == Grant::ALL;
        let (method, issuer, subject) = credential(&caller.principal);
        let calls = self.calls.lock().expect("never poisoned");
        let visible = calls
            .iter()
            .rev()
            .filter(|call| {
                everyone
                    || (call.auth_method == Some(method)
                        && call.issuer.as_deref() == issuer
                        && call.caller.as_deref() == Some(subject.as_str()))
            })
            .cloned()
            .collect();
        (visible, everyone)
    }
}

/// A principal as an entry records it: method, issuer, subject.
fn credential(principal: &Principal) -> (&'static str, Option<&str>, String) {
    match principal {
        Principal::Jwt { issuer, subject } => ("jwt", Some(issuer), subject.clone()),
        Principal::Header(id) | Principal::Configured(id) | Principal::Default(id) => {
            (principal.method(), None, id.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::{CallerId, HEAD_OFFICE};
    use serde_json::json;

    fn header(id: &str) -> Caller {
        Caller::by_id(
            CallerId::for_tests(id),
            Principal::Header,
            Default::default(),
        )
    }

    fn ended(caller: Option<&Caller>, tool: &str) -> Entry {
        let mut entry = Entry::new("r".into(), caller, tool, &json!({"secret": "arguments"}));
        entry.outcome = Outcome::Ok;
        entry.row_count = Some(3);
        entry
    }

    const SEATTLE: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
    const REDMOND: &str = "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234";

    #[test]
    fn head_office_sees_every_call_and_a_manager_their_own() {
        let ring = RecentCalls::new(10);
        let (seattle, redmond) = (header(SEATTLE), header(REDMOND));
        ring.push(&ended(Some(&seattle), "top_products"));
        ring.push(&ended(Some(&redmond), "low_stock"));
        ring.push(&ended(None, "revenue_by_month"));
        let head = Caller::by_id(HEAD_OFFICE, Principal::Header, Default::default());
        let (all, everyone) = ring.visible_to(&head);
        assert!(everyone);
        let tools: Vec<&str> = all.iter().map(|c| c.tool.as_str()).collect();
        assert_eq!(tools, ["revenue_by_month", "low_stock", "top_products"]);
        let (own, everyone) = ring.visible_to(&seattle);
        assert!(!everyone);
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].tool, "top_products");
        assert_eq!(own[0].caller.as_deref(), Some(SEATTLE));
        // the same id by another method is another credential
        let configured = Caller::by_id(
            CallerId::for_tests(SEATTLE),
            Principal::Configured,
            Default::default(),
        );
        assert!(ring.visible_to(&configured).0.is_empty());
        // never the arguments
        let line = serde_json::to_string(&own[0]).unwrap();
        assert!(!line.contains("secret"), "{line}");
    }

    #[test]
    fn the_ring_keeps_the_newest_calls() {
        let ring = RecentCalls::new(2);
        let seattle = header(SEATTLE);
        for tool in ["a", "b", "c"] {
            ring.push(&ended(Some(&seattle), tool));
        }
        let tools: Vec<String> = ring
            .visible_to(&seattle)
            .0
            .into_iter()
            .map(|c| c.tool)
            .collect();
        assert_eq!(tools, ["c", "b"]);
    }
}
