//! `get_multiple_table_schemas`: columns, types, keys and foreign keys of
//! `retail` tables, and the values of the small reference tables, so a model
//! can write correct SQL and pick valid filter values. Read once from the
//! system catalog and cached for the life of the process.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use tokio_postgres::GenericClient;

use super::support::parse_arguments;
use super::{ToolDescriptor, ToolError, ToolOutput};

pub const TOOL: ToolDescriptor = ToolDescriptor {
    name: "get_multiple_table_schemas",
    title: "Table schemas",
    description: "Columns (with types and nullability), primary and foreign keys of \
         tables in the retail schema, and for the small reference tables (regions, stores, \
         categories, product_types) their rows. Read these before writing SQL. Valid names: \
         retail.regions, retail.stores, retail.customers, retail.categories, retail.product_types, retail.products, retail.inventory, \
         retail.orders, retail.order_items, retail.product_description_embeddings (the schema prefix \
         may be left out).",
    source: "src/tools/table_schemas.rs",
    input_schema: super::support::input_schema::<Args>,
    output_schema,
};

pub const NAME: &str = TOOL.name;

/// Reference tables small enough to list, with the columns worth listing
/// (never `stores.rls_user_id`: in header mode a manager's id is a credential).
const REFERENCE_VALUES: [(&str, &str); 4] = [
    (
        "regions",
        "SELECT region_id, region_name FROM retail.regions ORDER BY region_id",
    ),
    (
        "stores",
        "SELECT store_id, store_name, is_online, region_id FROM retail.stores ORDER BY store_id",
    ),
    (
        "categories",
        "SELECT category_id, category_name FROM retail.categories ORDER BY category_id",
    ),
    (
        "product_types",
        "SELECT type_id, category_id, type_name FROM retail.product_types ORDER BY type_id",
    ),
];

#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Tables to describe, e.g. ["retail.orders", "retail.order_items"].
    #[schemars(length(min = 1, max = 20))]
    pub table_names: Vec<String>,
}

pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "tables": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "table": { "type": "string" },
                        "row_level_security": { "type": "boolean" },
                        "columns": { "type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "name": { "type": "string" },
                                "type": { "type": "string" },
                                "nullable": { "type": "boolean" },
                            },
                            "required": ["name", "type", "nullable"],
                        }},
                        "constraints": { "type": "array", "items": { "type": "string" } },
                        "rows": { "type": "array", "items": { "type": "object" } },
                    },
                    "required": ["table", "row_level_security", "columns", "constraints"],
                },
            },
        },
        "required": ["tables"],
        "additionalProperties": false,
    })
}

/// Every retail table's description, by bare table name.
pub type TableSchemas = Map<String, Value>;

/// The per-process cache.
#[derive(Default)]
pub struct Cache(OnceCell<Arc<TableSchemas>>);

impl Args {
    /// Parses and checks the arguments (before any SQL runs).
    pub fn parse(arguments: Value) -> Result<Args, ToolError> {
        let args: Args = parse_arguments(arguments)?;
        if args.table_names.is_empty() || args.table_names.len() > 20 {
            return Err(ToolError::InvalidArgument {
                argument: "table_names".to_owned(),
                rule: "give between 1 and 20 table names".to_owned(),
            });
        }
        Ok(args)
    }
}

pub async fn call(
    client: &impl GenericClient,
    cache: Option<&Cache>,
    args: Args,
) -> Result<ToolOutput, ToolError> {
    let schemas = match cache {
        Some(cache) => cache
            .0
            .get_or_try_init(|| async { load(client).await.map(Arc::new) })
            .await?
            .clone(),
        None => Arc::new(load(client).await?),
    };
    let mut tables = Vec::new();
    for requested in &args.table_names {
        let bare = requested.trim().to_lowercase();
        let bare = bare.strip_prefix("retail.").unwrap_or(&bare);
        let table = schemas
            .get(bare)
            .ok_or_else(|| ToolError::InvalidArgument {
                argument: "table_names".to_owned(),
                rule: format!(
                    "no table {requested:?} in the retail schema; valid: {}",
                    schemas
                        .keys()
                        .map(|k| format!("retail.{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        tables.push(table.clone());
    }
    Ok(ToolOutput {
        structured: json!({ "tables": tables }),
        visible: None,
    })
}

async fn load(client: &impl GenericClient) -> Result<TableSchemas, ToolError> {
    let db = ToolError::from_database;
    let mut schemas = TableSchemas::new();
    let tables = client
        .query(
            "SELECT c.relname::text, c.relrowsecurity FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY c.relname",
            &[],
        )
        .await
        .map_err(db)?;
    for row in &tables {
        let name: String = row.get(0);
        schemas.insert(
            name.clone(),
            json!({ "table": format!("retail.{name}"), "row_level_security": row.get::<_, bool>(1),
                    "columns": [], "constraints": [] }),
        );
    }
    let columns = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY c.relname, a.attnum",
            &[],
        )
        .await
        .map_err(db)?;
    for row in &columns {
        if let Some(table) = schemas.get_mut(&row.get::<_, String>(0)) {
            table["columns"]
                .as_array_mut()
                .expect("an array")
                .push(json!({
                    "name": row.get::<_, String>(1),
                    "type": row.get::<_, String>(2),
                    "nullable": row.get::<_, bool>(3),
                }));
        }
    }
    let constraints = client
        .query(
            "SELECT c.relname::text, pg_get_constraintdef(k.oid) FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND k.contype IN ('p', 'f', 'u') \
             ORDER BY c.relname, position(k.contype IN 'pfu'), k.conname",
            &[],
        )
        .await
        .map_err(db)?;
    for row in &constraints {
        if let Some(table) = schemas.get_mut(&row.get::<_, String>(0)) {
            table["constraints"]
                .as_array_mut()
                .expect("an array")
                .push(Value::String(row.get(1)));
        }
    }
    for (name, sql) in REFERENCE_VALUES {
        let rows = client
            .query(
                &format!("SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t"),
                &[],
            )
            .await
            .map_err(db)?;
        let values: Value = rows[0].get(0);
        if let Some(table) = schemas.get_mut(name) {
            table["rows"] = values;
        }
    }
    Ok(schemas)
}
