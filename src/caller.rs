//! Who is calling: what they may see (a [`Grant`], enforced by row-level
//! security), which tools they may use ([`Scopes`]), and who they are for
//! the logs ([`Principal`]).

use std::collections::BTreeSet;
use std::fmt;

/// A caller's identity: a UUID matched against `retail.stores.rls_user_id`.
/// It can only be made by parsing, so it is always a well-formed UUID before
/// it reaches SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerId(uuid::Uuid);

/// The identity that sees every store.
pub const HEAD_OFFICE: CallerId = CallerId(uuid::Uuid::nil());

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("caller id `{0}` is not a UUID (like f47ac10b-58cc-4372-a567-0e02b2c3d479)")]
pub struct InvalidCallerId(String);

impl CallerId {
    /// Only the identity code makes a caller from text: [`crate::auth`] from
    /// a request, and the operator's configuration (`--caller`,
    /// `--default-caller`) through [`CallerId::configured`].
    pub(crate) fn parse(text: &str) -> Result<CallerId, InvalidCallerId> {
        let trimmed = text.trim();
        // only the hyphenated form: it is the one RLS compares with
        if trimmed.len() != 36 {
            return Err(InvalidCallerId(text.to_owned()));
        }
        uuid::Uuid::try_parse(trimmed)
            .map(CallerId)
            .map_err(|_| InvalidCallerId(text.to_owned()))
    }
}

impl CallerId {
    /// The caller a command-line flag names.
    pub(crate) fn configured(flag: &str, text: &str) -> anyhow::Result<CallerId> {
        CallerId::parse(text).map_err(|err| anyhow::anyhow!("{flag}: {err}"))
    }

    /// Any caller, for tests that call tools without a server. Built only
    /// with the `test-support` feature.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests(text: &str) -> CallerId {
        CallerId::parse(text).expect("a caller id of the tests")
    }
}

impl fmt::Display for CallerId {
    /// Lower-case and hyphenated, as `rls_user_id::text` is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The stores a caller may see. The database resolves it when a call opens
/// (`sqlmcp_identity.open_call`, migration V6) and signs the result for the
/// call's transaction; row-level security reads nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    /// The stores the database maps this id to: every store for head
    /// office, a manager's store, the stores of a regional manager's
    /// regions, nothing for an unknown id.
    Mapped(CallerId),
    /// Exactly these stores and the stores of these regions (by name, in
    /// any case), as a verified credential lists them.
    Listed {
        stores: BTreeSet<i32>,
        regions: BTreeSet<String>,
    },
}

impl Grant {
    /// Every store.
    pub const ALL: Grant = Grant::Mapped(HEAD_OFFICE);

    /// The bind parameters of `sqlmcp_identity.open_call($1, $2, $3)`.
    pub fn open_call_params(&self) -> (Option<String>, Option<Vec<i32>>, Option<Vec<String>>) {
        match self {
            Grant::Mapped(id) => (Some(id.to_string()), None, None),
            Grant::Listed { stores, regions } => (
                None,
                Some(stores.iter().copied().collect()),
                Some(regions.iter().cloned().collect()),
            ),
        }
    }

    /// Bytes it takes, roughly (a credential may list many stores).
    pub fn weight(&self) -> usize {
        match self {
            Grant::Mapped(_) => 16,
            Grant::Listed { stores, regions } => {
                4 * stores.len() + regions.iter().map(|r| r.len() + 24).sum::<usize>()
            }
        }
    }
}

impl From<CallerId> for Grant {
    fn from(id: CallerId) -> Grant {
        Grant::Mapped(id)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Mapped(id) if *id == HEAD_OFFICE => f.write_str("all stores"),
            Grant::Mapped(id) => write!(f, "the stores of {id}"),
            Grant::Listed { stores, regions } => {
                let stores: Vec<String> = stores.iter().map(i32::to_string).collect();
                let regions: Vec<&str> = regions.iter().map(String::as_str).collect();
                write!(
                    f,
                    "stores [{}] and regions [{}]",
                    stores.join(", "),
                    regions.join(", ")
                )
            }
        }
    }
}

/// The tools a caller may use, by the scopes their credential grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    pub fn new<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> Scopes {
        Scopes(scopes.into_iter().map(Into::into).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let all: Vec<&str> = self.iter().collect();
        f.write_str(&all.join(" "))
    }
}

/// How the caller proved who they are, and who that is: for logs, the audit
/// log and per-caller limits, never for what they may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The trusted `x-rls-user-id` header.
    Header(CallerId),
    /// A verified bearer token: its issuer and subject.
    Jwt { issuer: String, subject: String },
    /// The identity configured for a stdio client or the command line.
    Configured(CallerId),
    /// `--default-caller`, for a request that named no one.
    Default(CallerId),
}

impl Principal {
    /// `header`, `jwt`, `configured` or `default`.
    pub fn method(&self) -> &'static str {
        match self {
            Principal::Header(_) => "header",
            Principal::Jwt { .. } => "jwt",
            Principal::Configured(_) => "configured",
            Principal::Default(_) => "default",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Header(id) | Principal::Configured(id) | Principal::Default(id) => id.fmt(f),
            Principal::Jwt { issuer, subject } => write!(f, "{subject} ({issuer})"),
        }
    }
}

/// A caller: who, what they may see, and which tools they may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub grant: Grant,
    pub scopes: Scopes,
    /// The roles a credential names (a JWT's roles claim); none otherwise.
    pub roles: BTreeSet<String>,
}

impl Caller {
    /// A caller known by id alone (header mode, stdio, the default caller):
    /// the database maps the id to stores, and the operator's scopes apply.
    pub fn by_id(id: CallerId, principal: fn(CallerId) -> Principal, scopes: Scopes) -> Caller {
        Caller {
            principal: principal(id),
            grant: Grant::Mapped(id),
            scopes,
            roles: BTreeSet::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hyphenated_uuids_in_any_case() {
        let id = CallerId::parse(" F47AC10B-58CC-4372-A567-0E02B2C3D479 ").unwrap();
        assert_eq!(id.to_string(), "f47ac10b-58cc-4372-a567-0e02b2c3d479");
        assert_eq!(
            HEAD_OFFICE.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "not-a-uuid",
            "f47ac10b58cc4372a5670e02b2c3d479",
            "{f47ac10b-58cc-4372-a567-0e02b2c3d479}",
            "f47ac10b-58cc-4372-a567-0e02b2c3d47",
            "' OR 1=1 --",
        ] {
            assert!(CallerId::parse(bad).is_err(), "{bad}");
        }
    }
}
