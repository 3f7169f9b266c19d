//! Who is calling: the identity row-level security filters by.

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
