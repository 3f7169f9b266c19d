//! From a verified token's claims to a [`Caller`]: who, which stores, which
//! tools.
//!
//! - **Stores:** a token that grants head office (its roles claim holds
//!   the head-office role), or lists stores or regions, sees exactly that.
//!   Otherwise its id claim must be a manager's UUID, and the database maps
//!   it to stores as in header mode.
//! - **Scopes:** the space-separated `scope` claim (RFC 9068), or `scp` (a
//!   list or a string, as Entra ID writes it); a token with neither gets the
//!   operator's default scopes.
//!
//! A claim name that starts with `/` is a JSON pointer into the claims, for
//! providers that nest them (Keycloak: `/realm_access/roles`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::AuthError;
use crate::caller::{Caller, CallerId, Grant, Principal, Scopes};

/// Where a token's claims say who the caller is and what they may see.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// The caller's id (`sub`).
    pub id: String,
    /// A list of roles (`roles`).
    pub roles: String,
    /// A list of store ids (`stores`).
    pub stores: String,
    /// A list of region names (`regions`).
    pub regions: String,
    /// The scopes; `None`: `scope`, then `scp`.
    pub scopes: Option<String>,
    /// The role that sees every store (`head_office`).
    pub head_office_role: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            id: "sub".to_owned(),
            roles: "roles".to_owned(),
            stores: "stores".to_owned(),
            regions: "regions".to_owned(),
            scopes: None,
            head_office_role: "head_office".to_owned(),
        }
    }
}

impl ClaimNames {
    /// The caller a verified token names. `default_scopes` apply when it
    /// carries no scopes at all.
    pub fn caller(
        &self,
        claims: &Map<String, Value>,
        default_scopes: &Scopes,
    ) -> Result<Caller, AuthError> {
        let invalid = |reason: String| AuthError::InvalidToken(reason);
        let subject = match claim(claims, &self.id) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(invalid(format!("the `{}` claim is not a string", self.id))),
            None => return Err(invalid(format!("no `{}` claim", self.id))),
        };
        let roles = strings(claims, &self.roles)?.unwrap_or_default();
        let stores = store_ids(claims, &self.stores)?;
        let regions = strings(claims, &self.regions)?;
        let grant = if roles.contains(&self.head_office_role) {
            Grant::ALL
        } else if stores.is_some() || regions.is_some() {
            Grant::Listed {
                stores: stores.unwrap_or_default(),
                regions: regions.unwrap_or_default(),
            }
        } else {
            let id = CallerId::parse(&subject).map_err(|_| {
                invalid(format!(
                    "the `{}` claim is not a UUID, and the token lists no stores, regions or head-office role",
                    self.id
                ))
            })?;
            Grant::Mapped(id)
        };
        let scopes = match &self.scopes {
            Some(name) => scope_list(claims, name)?,
            None => match scope_list(claims, "scope")? {
                Some(scopes) => Some(scopes),
                None => scope_list(claims, "scp")?,
            },
        }
        .unwrap_or_else(|| default_scopes.clone());
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Caller {
            principal: Principal::Jwt { issuer, subject },
            grant,
            scopes,
            roles,
        })
    }
}

/// A claim by name, or by JSON pointer when the name starts with `/`.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(pointer) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    let mut value: Option<&Value> = None;
    let mut object = claims;
    for (i, part) in pointer.split('/').enumerate() {
        let key = part.replace("~1", "/").replace("~0", "~");
        if i > 0 {
            object = value?.as_object()?;
        }
        value = Some(object.get(&key)?);
    }
    value
}

/// A claim that is a string or a list of strings; `None` when absent or null.
fn strings(claims: &Map<String, Value>, name: &str) -> Result<Option<BTreeSet<String>>, AuthError> {
    let malformed =
        || AuthError::InvalidToken(format!("the `{name}` claim must be a list of strings"));
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(BTreeSet::from([s.clone()]))),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(malformed))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(malformed()),
    }
}

/// A claim that lists store ids, as numbers or numeric strings.
fn store_ids(claims: &Map<String, Value>, name: &str) -> Result<Option<BTreeSet<i32>>, AuthError> {
    let malformed = || {
        AuthError::InvalidToken(format!(
            "the `{name}` claim must be a list of store ids (integers)"
        ))
    };
    let id = |value: &Value| -> Result<i32, AuthError> {
        match value {
            Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(malformed)
    };
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items.iter().map(id).collect::<Result<_, _>>().map(Some),
        Some(single) => Ok(Some(BTreeSet::from([id(single)?]))),
    }
}

/// Scopes: a space-separated string or a list of strings.
fn scope_list(claims: &Map<String, Value>, name: &str) -> Result<Option<Scopes>, AuthError> {
    let malformed = || {
        AuthError::InvalidToken(format!(
            "the `{name}` claim must be a space-separated string or a list of scopes"
        ))
    };
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Scopes::new(s.split_ascii_whitespace()))),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(malformed))
            .collect::<Result<Vec<_>, _>>()
            .map(|scopes| Some(Scopes::new(scopes))),
        Some(_) => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SEATTLE: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";

    fn caller(names: &ClaimNames, claims: Value) -> Result<Caller, AuthError> {
        let defaults = Scopes::new(["sales:read", "sales:sql"]);
        names.caller(claims.as_object().unwrap(), &defaults)
    }

    #[test]
    fn a_token_without_store_claims_is_mapped_by_its_id() {
        let c = caller(&ClaimNames::default(), json!({"sub": SEATTLE, "iss": "i"})).unwrap();
        assert_eq!(c.grant, Grant::Mapped(CallerId::for_tests(SEATTLE)));
        assert_eq!(c.scopes, Scopes::new(["sales:read", "sales:sql"]));
        assert_eq!(
            c.principal,
            Principal::Jwt {
                issuer: "i".into(),
                subject: SEATTLE.into()
            }
        );
        let err = caller(&ClaimNames::default(), json!({"sub": "auth0|42"})).unwrap_err();
        assert!(err.to_string().contains("not a UUID"), "{err}");
    }

    #[test]
    fn roles_stores_and_regions_decide_the_grant() {
        let names = ClaimNames::default();
        let head = caller(
            &names,
            json!({"sub": "auth0|1", "roles": ["x", "head_office"], "stores": [3]}),
        );
        assert_eq!(head.unwrap().grant, Grant::ALL);
        let listed = caller(
            &names,
            json!({"sub": "auth0|2", "roles": ["regional_manager"], "stores": [1, "2"], "regions": "East"}),
        )
        .unwrap();
        assert_eq!(
            listed.grant,
            Grant::Listed {
                stores: BTreeSet::from([1, 2]),
                regions: BTreeSet::from(["East".to_owned()])
            }
        );
        assert_eq!(
            listed.roles,
            BTreeSet::from(["regional_manager".to_owned()])
        );
        // an empty list is a grant of nothing, not a fallback to the id
        let nothing = caller(&names, json!({"sub": SEATTLE, "stores": []})).unwrap();
        assert_eq!(
            nothing.grant,
            Grant::Listed {
                stores: BTreeSet::new(),
                regions: BTreeSet::new()
            }
        );
    }

    #[test]
    fn malformed_claims_are_refused_not_ignored() {
        let names = ClaimNames::default();
        for bad in [
            json!({"sub": SEATTLE, "stores": ["one"]}),
            json!({"sub": SEATTLE, "stores": [1.5]}),
            json!({"sub": SEATTLE, "stores": [4294967296_i64]}),
            json!({"sub": SEATTLE, "regions": [1]}),
            json!({"sub": SEATTLE, "roles": {"a": 1}}),
            json!({"sub": SEATTLE, "scope": 7}),
            json!({"sub": {"id": 1}}),
        ] {
            assert!(caller(&names, bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_come_from_scope_or_scp_or_the_defaults() {
        let names = ClaimNames::default();
        let spaced = caller(
            &names,
            json!({"sub": SEATTLE, "scope": "openid sales:read"}),
        )
        .unwrap();
        assert_eq!(spaced.scopes, Scopes::new(["openid", "sales:read"]));
        let listed = caller(&names, json!({"sub": SEATTLE, "scp": ["sales:sql"]})).unwrap();
        assert_eq!(listed.scopes, Scopes::new(["sales:sql"]));
        let none = caller(&names, json!({"sub": SEATTLE, "scope": ""})).unwrap();
        assert_eq!(none.scopes, Scopes::default());
        let custom = ClaimNames {
            scopes: Some("permissions".into()),
            ..ClaimNames::default()
        };
        let perms = caller(
            &custom,
            json!({"sub": SEATTLE, "scope": "sales:sql", "permissions": ["sales:read"]}),
        )
        .unwrap();
        assert_eq!(perms.scopes, Scopes::new(["sales:read"]));
    }

    #[test]
    fn json_pointers_reach_nested_claims() {
        let names = ClaimNames {
            roles: "/realm_access/roles".into(),
            stores: "/https:~1~1zava.example~1stores".into(),
            ..ClaimNames::default()
        };
        let head = caller(
            &names,
            json!({"sub": "k", "realm_access": {"roles": ["head_office"]}}),
        )
        .unwrap();
        assert_eq!(head.grant, Grant::ALL);
        let stores = caller(
            &names,
            json!({"sub": "k", "https://zava.example/stores": [8]}),
        )
        .unwrap();
        assert_eq!(
            stores.grant,
            Grant::Listed {
                stores: BTreeSet::from([8]),
                regions: BTreeSet::new()
            }
        );
        let missing = caller(&names, json!({"sub": "k", "realm_access": "x"})).unwrap_err();
        assert!(missing.to_string().contains("not a UUID"), "{missing}");
    }
}
