//! Which scope each tool needs. A caller sees and calls only the tools
//! whose scopes their credential grants.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::caller::Scopes;
use crate::tools;

/// The scope of the curated tools, the schema tool and the date tool.
pub const READ: &str = "sales:read";
/// The scope of `execute_sales_query`.
pub const SQL: &str = "sales:sql";

/// The scope each tool needs: [`READ`], but [`SQL`] for raw SQL, unless the
/// operator says otherwise (`--tool-scope TOOL=SCOPE`).
#[derive(Debug, Clone)]
pub struct ToolScopes {
    by_tool: BTreeMap<String, String>,
}

impl ToolScopes {
    /// The defaults with `overrides` (tool name, scope) applied; a tool the
    /// server does not have, or a malformed scope, is an error. A query
    /// that serves only a resource template (`--@ resource-only`) needs a
    /// scope as a tool does, [`READ`] by default.
    pub fn new(overrides: &[(String, String)]) -> Result<ToolScopes> {
        let mut by_tool: BTreeMap<String, String> = tools::definitions()
            .iter()
            .map(|tool| tool.name)
            .chain(tools::resource_only_queries())
            .map(|tool| {
                let scope = if tool == tools::raw_sql::NAME {
                    SQL
                } else {
                    READ
                };
                (tool.to_owned(), scope.to_owned())
            })
            .collect();
        for (tool, scope) in overrides {
            if !valid_scope(scope) {
                bail!(
                    "--tool-scope {tool}={scope}: a scope is one or more printable ASCII \
                     characters other than space, `\"` and `\\`"
                );
            }
            let Some(entry) = by_tool.get_mut(tool) else {
                let names: Vec<&str> = by_tool.keys().map(String::as_str).collect();
                bail!(
                    "--tool-scope {tool}={scope}: there is no tool `{tool}` (the tools: {})",
                    names.join(", ")
                );
            };
            *entry = scope.clone();
        }
        Ok(ToolScopes { by_tool })
    }

    /// The scope `tool` needs; an unknown tool needs one no caller holds.
    pub fn required(&self, tool: &str) -> &str {
        self.by_tool.get(tool).map_or("", String::as_str)
    }

    /// Whether `scopes` let a caller use `tool`.
    pub fn allows(&self, scopes: &Scopes, tool: &str) -> bool {
        let required = self.required(tool);
        !required.is_empty() && scopes.contains(required)
    }

    /// Every scope some tool needs, in order: what the server publishes as
    /// `scopes_supported`, and what a caller gets when the operator sets no
    /// default.
    pub fn all(&self) -> BTreeSet<&str> {
        self.by_tool.values().map(String::as_str).collect()
    }

    /// Every scope some tool needs, as a caller's scopes.
    pub fn every_scope(&self) -> Scopes {
        Scopes::new(self.all())
    }
}

/// RFC 6749's `scope-token`: `%x21 / %x23-5B / %x5D-7E`.
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_sql_needs_its_own_scope_and_overrides_apply() {
        let scopes = ToolScopes::new(&[]).unwrap();
        assert_eq!(scopes.required("execute_sales_query"), SQL);
        assert_eq!(scopes.required("top_products"), READ);
        assert_eq!(
            scopes.required("store_summary"),
            READ,
            "a resource-only query needs a scope too"
        );
        assert_eq!(scopes.all(), BTreeSet::from([READ, SQL]));
        let reader = Scopes::new([READ]);
        assert!(scopes.allows(&reader, "top_products"));
        assert!(!scopes.allows(&reader, "execute_sales_query"));
        assert!(!scopes.allows(&Scopes::new([READ, SQL]), "no_such_tool"));

        let custom = ToolScopes::new(&[("top_products".into(), "zava:top".into())]).unwrap();
        assert!(!custom.allows(&reader, "top_products"));
        assert!(custom.allows(&Scopes::new(["zava:top"]), "top_products"));
    }

    #[test]
    fn unknown_tools_and_malformed_scopes_are_refused() {
        let err = ToolScopes::new(&[("top_product".into(), "x".into())]).unwrap_err();
        assert!(
            err.to_string().contains("there is no tool `top_product`"),
            "{err}"
        );
        for bad in ["", "a b", "say\"hi\"", "back\\slash", "é"] {
            assert!(
                ToolScopes::new(&[("top_products".into(), bad.into())]).is_err(),
                "{bad:?}"
            );
        }
    }
}
