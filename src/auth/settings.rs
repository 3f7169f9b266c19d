//! The flags that decide which tools a caller may use and how a token's
//! claims name their stores.

use anyhow::{Result, bail};
use clap::Args;

use super::{ClaimNames, ToolScopes};
use crate::caller::Scopes;

#[derive(Debug, Clone, Args)]
pub struct AccessSettings {
    /// The scope a tool needs, as TOOL=SCOPE (repeatable, or
    /// comma-separated). By default raw SQL (`execute_sales_query`) needs
    /// `sales:sql` and every other tool `sales:read`. A query's resource
    /// template needs its query's scope; a resource-only query
    /// (`store_summary`) is named like a tool.
    #[arg(
        long = "tool-scope",
        env = "SQLMCP_TOOL_SCOPES",
        value_delimiter = ',',
        value_name = "TOOL=SCOPE"
    )]
    tool_scopes: Vec<String>,
    /// The scopes of a caller whose credential names none: header mode,
    /// stdio, the default caller, and tokens without a `scope`/`scp` claim
    /// (space-separated; empty: none). Default: every scope a tool needs.
    #[arg(long, env = "SQLMCP_DEFAULT_SCOPES", value_name = "SCOPES")]
    default_scopes: Option<String>,
    /// jwt: the claim listing the caller's roles (a name, or a JSON pointer
    /// such as /realm_access/roles).
    #[arg(long, env = "SQLMCP_JWT_ROLES_CLAIM", default_value = "roles")]
    jwt_roles_claim: String,
    /// jwt: the claim listing the store ids the caller may see.
    #[arg(long, env = "SQLMCP_JWT_STORES_CLAIM", default_value = "stores")]
    jwt_stores_claim: String,
    /// jwt: the claim listing the regions (by name) whose stores the caller
    /// may see.
    #[arg(long, env = "SQLMCP_JWT_REGIONS_CLAIM", default_value = "regions")]
    jwt_regions_claim: String,
    /// jwt: the claim holding the caller's scopes. Default: `scope`, then
    /// `scp`.
    #[arg(long, env = "SQLMCP_JWT_SCOPES_CLAIM")]
    jwt_scopes_claim: Option<String>,
    /// jwt: the role that sees every store.
    #[arg(long, env = "SQLMCP_HEAD_OFFICE_ROLE", default_value = "head_office")]
    head_office_role: String,
}

impl AccessSettings {
    pub fn tool_scopes(&self) -> Result<ToolScopes> {
        let overrides = self
            .tool_scopes
            .iter()
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((tool, scope)) => Ok((tool.trim().to_owned(), scope.trim().to_owned())),
                None => {
                    bail!("--tool-scope {pair}: write TOOL=SCOPE, e.g. top_products=sales:read")
                }
            })
            .collect::<Result<Vec<_>>>()?;
        ToolScopes::new(&overrides)
    }

    /// `--default-scopes`, or every scope of `tools`.
    pub fn default_scopes(&self, tools: &ToolScopes) -> Result<Scopes> {
        let Some(text) = &self.default_scopes else {
            return Ok(tools.every_scope());
        };
        let scopes: Vec<&str> = text
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = scopes.iter().find(|s| !super::scopes::valid_scope(s)) {
            bail!("--default-scopes: `{bad}` is not a scope (printable ASCII, no `\"` or `\\`)");
        }
        Ok(Scopes::new(scopes))
    }

    /// Where tokens name the caller: `id_claim` (`--jwt-claim`) and these
    /// flags.
    pub fn claim_names(&self, id_claim: &str) -> ClaimNames {
        ClaimNames {
            id: id_claim.to_owned(),
            roles: self.jwt_roles_claim.clone(),
            stores: self.jwt_stores_claim.clone(),
            regions: self.jwt_regions_claim.clone(),
            scopes: self.jwt_scopes_claim.clone(),
            head_office_role: self.head_office_role.clone(),
        }
    }
}
