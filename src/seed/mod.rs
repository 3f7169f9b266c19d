//! `sqlmcp seed`: deterministic Zava Retail sample data, bulk-loaded with COPY.
//!
//! The whole load is one transaction: it either fully replaces the data or
//! leaves the database as it was.

mod assortment;
mod generate;
mod names;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use indicatif::ProgressBar;
use tokio_postgres::{Client, GenericClient, Transaction};

pub use assortment::{Assortment, Cents};
pub use generate::{Dataset, EAST_REGIONAL_MANAGER_ID, REGIONS, STORES, Scale, generate};

use crate::migrate;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// The identity that sees every store's rows.
pub const HEAD_OFFICE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Who manages which regions: identity data, outside `retail`.
const REGION_MANAGERS: &str = "sqlmcp_identity.region_managers";

/// Tables under row-level security. Their owner is subject to it as well
/// (FORCE), and COPY FROM refuses tables whose RLS applies to the caller.
const TENANT_TABLES: [&str; 4] = [
    "retail.customers",
    "retail.orders",
    "retail.order_items",
    "retail.inventory",
];

/// Every `retail` table with its primary key, in load order.
pub const TABLES: [(&str, &str); 10] = [
    ("retail.regions", "region_id"),
    ("retail.stores", "store_id"),
    ("retail.categories", "category_id"),
    ("retail.product_types", "type_id"),
    ("retail.products", "product_id"),
    ("retail.customers", "customer_id"),
    ("retail.orders", "order_id"),
    ("retail.order_items", "order_item_id"),
    ("retail.inventory", "store_id, product_id"),
    (
        "retail.product_description_embeddings",
        "product_id, model_id",
    ),
];

#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub scale: Scale,
    pub seed: u64,
    pub if_seeded: IfSeeded,
    pub progress: bool,
}

/// What to do when the database already holds sample data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfSeeded {
    /// Fail with an error (the default: data is never replaced by accident).
    Refuse,
    /// Leave the data as it is and succeed (for scripts that may re-run).
    Keep,
    /// Replace it.
    Replace,
}

/// Rows and an order-independent content checksum of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChecksum {
    pub table: &'static str,
    pub rows: i64,
    pub md5: String,
}

#[derive(Debug)]
pub struct SeedReport {
    pub rows: usize,
    pub generated_in: Duration,
    pub loaded_in: Duration,
}

/// Generates the sample data and loads it in one transaction. Returns `None`
/// when the database was already seeded and `IfSeeded::Keep` left it alone.
pub async fn seed(client: &mut Client, options: SeedOptions) -> Result<Option<SeedReport>> {
    ensure_migrated(client).await?;

    let started = Instant::now();
    let data = generate(Assortment::bundled()?, options.scale, options.seed);
    let generated_in = started.elapsed();

    let started = Instant::now();
    let tx = client.transaction().await?;
    // Serialise concurrent seeders: the second waits, then sees seeded data.
    tx.batch_execute("LOCK TABLE retail.stores IN EXCLUSIVE MODE")
        .await?;
    let seeded: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM retail.stores)", &[])
        .await?
        .get(0);
    match (seeded, options.if_seeded) {
        (false, _) => {}
        (true, IfSeeded::Refuse) => {
            bail!("the database already holds sample data; pass --force to replace it")
        }
        (true, IfSeeded::Keep) => return Ok(None),
        (true, IfSeeded::Replace) => {
            let all: Vec<&str> = TABLES.iter().map(|(table, _)| *table).collect();
            tx.batch_execute(&format!(
                "TRUNCATE {}, {REGION_MANAGERS} RESTART IDENTITY",
                all.join(", ")
            ))
            .await
            .context("cannot clear the existing data")?;
        }
    }
    for table in TENANT_TABLES {
        tx.batch_execute(&format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"))
            .await
            .with_context(|| {
                format!("cannot load {table}: seed must run as the role that owns the tables")
            })?;
    }

    let progress = crate::progress::bar(
        options.progress,
        data.row_count() as u64,
        "{msg:>20}",
        "rows",
    );
    load(&tx, &data, &progress).await?;
    progress.finish_and_clear();

    for (table, key) in TABLES {
        if !key.contains(',') {
            tx.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{key}'), \
                 coalesce((SELECT max({key}) FROM {table}), 0) + 1, false)"
            ))
            .await?;
        }
    }
    for table in TENANT_TABLES {
        tx.batch_execute(&format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"))
            .await?;
    }
    tx.commit().await.context("cannot commit the sample data")?;
    let all: Vec<&str> = TABLES.iter().map(|(table, _)| *table).collect();
    client
        .batch_execute(&format!("ANALYZE {}", all.join(", ")))
        .await?;
    Ok(Some(SeedReport {
        rows: data.row_count(),
        generated_in,
        loaded_in: started.elapsed(),
    }))
}

async fn ensure_migrated(client: &Client) -> Result<()> {
    let expected = migrate::embedded().len() as i64;
    let applied: Option<i64> = client
        .query_opt(
            "SELECT count(*) FROM refinery_schema_history \
             WHERE to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0));
    match applied {
        Some(n) if n >= expected => Ok(()),
        _ => bail!("the database is not migrated to this version; run `sqlmcp migrate` first"),
    }
}

async fn load(tx: &Transaction<'_>, data: &Dataset, progress: &ProgressBar) -> Result<()> {
    load_stores(tx, data, progress).await?;
    load_assortment(tx, data, progress).await?;
    load_sales(tx, data, progress).await
}

/// The regions, the stores, and who manages which region.
async fn load_stores(tx: &Transaction<'_>, data: &Dataset, progress: &ProgressBar) -> Result<()> {
    let regions: Vec<(usize, &generate::RegionSpec)> = REGIONS.iter().enumerate().collect();
    copy(
        tx,
        progress,
        "retail.regions (region_id, region_name)",
        &regions,
        |out, (i, r)| writeln!(out, "{}\t{}", i + 1, r.name),
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.stores (store_id, store_name, rls_user_id, is_online, region_id)",
        &data.stores,
        |out, s| {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                s.id, s.spec.name, s.spec.rls_user_id, s.spec.is_online, s.spec.region_id
            )
        },
    )
    .await?;
    let managers: Vec<(usize, &str)> = regions
        .iter()
        .flat_map(|(i, r)| r.managers.iter().map(move |m| (i + 1, *m)))
        .collect();
    copy(
        tx,
        progress,
        &format!("{REGION_MANAGERS} (region_id, rls_user_id)"),
        &managers,
        |out, (region, manager)| writeln!(out, "{region}\t{manager}"),
    )
    .await
}

/// What the stores sell.
async fn load_assortment(
    tx: &Transaction<'_>,
    data: &Dataset,
    progress: &ProgressBar,
) -> Result<()> {
    let assortment = &data.assortment;
    copy(
        tx,
        progress,
        "retail.categories (category_id, category_name)",
        &assortment.categories,
        |out, c| writeln!(out, "{}\t{}", c.id, escape(c.name)),
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.product_types (type_id, category_id, type_name)",
        &assortment.product_types,
        |out, t| writeln!(out, "{}\t{}\t{}", t.id, t.category_id, escape(t.name)),
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.products (product_id, sku, product_name, category_id, type_id, cost, base_price, gross_margin_percent, product_description)",
        &assortment.products,
        |out, p| {
            let margin = p.gross_margin_basis_points();
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}.{:02}\t{}",
                p.id,
                escape(p.sku),
                escape(p.name),
                p.category_id,
                p.type_id,
                p.cost,
                p.base_price,
                margin / 100,
                margin % 100,
                escape(p.description)
            )
        },
    )
    .await
}

/// Customers, their orders and the stock left.
async fn load_sales(tx: &Transaction<'_>, data: &Dataset, progress: &ProgressBar) -> Result<()> {
    copy(
        tx,
        progress,
        "retail.customers (customer_id, first_name, last_name, email, phone, primary_store_id, created_at)",
        &data.customers,
        |out, c| {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{} {}",
                c.id,
                c.first_name,
                c.last_name,
                c.email(),
                c.phone,
                c.primary_store_id,
                c.created_at.date(),
                c.created_at.time()
            )
        },
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.orders (order_id, customer_id, store_id, order_date)",
        &data.orders,
        |out, o| {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                o.id, o.customer_id, o.store_id, o.order_date
            )
        },
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.order_items (order_item_id, order_id, store_id, product_id, quantity, unit_price, discount_percent, discount_amount, total_amount)",
        &data.order_items,
        |out, i| {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                i.id,
                i.order_id,
                i.store_id,
                i.product_id,
                i.quantity,
                i.unit_price,
                i.discount_percent,
                i.discount_amount,
                i.total_amount
            )
        },
    )
    .await?;
    copy(
        tx,
        progress,
        "retail.inventory (store_id, product_id, stock_level)",
        &data.inventory,
        |out, i| writeln!(out, "{}\t{}\t{}", i.store_id, i.product_id, i.stock_level),
    )
    .await
}

/// Streams rows into `COPY target FROM STDIN` (text format) in ~1 MiB chunks.
async fn copy<T>(
    tx: &Transaction<'_>,
    progress: &ProgressBar,
    target: &str,
    rows: &[T],
    write_row: impl Fn(&mut String, &T) -> std::fmt::Result,
) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let table = target.split_whitespace().next().unwrap_or(target);
    progress.set_message(table.trim_start_matches("retail.").to_owned());
    let sink = tx
        .copy_in(&format!("COPY {target} FROM STDIN"))
        .await
        .with_context(|| format!("cannot start loading {table}"))?;
    let mut sink = std::pin::pin!(sink);
    let mut buffer = String::with_capacity(CHUNK + 4096);
    let mut pending = 0u64;
    for row in rows {
        write_row(&mut buffer, row).expect("writing to a String cannot fail");
        pending += 1;
        if buffer.len() >= CHUNK {
            sink.send(Bytes::from(std::mem::take(&mut buffer))).await?;
            buffer.reserve(CHUNK + 4096);
            progress.inc(pending);
            pending = 0;
        }
    }
    if !buffer.is_empty() {
        sink.send(Bytes::from(buffer)).await?;
    }
    let copied = sink
        .finish()
        .await
        .with_context(|| format!("cannot load {table}"))?;
    progress.inc(pending);
    anyhow::ensure!(
        copied == rows.len() as u64,
        "{table}: COPY loaded {copied} rows, expected {}",
        rows.len()
    );
    Ok(())
}

/// Escapes a value for COPY's text format.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .into()
}

/// Row count and checksum of every `retail` table, read as head office so
/// that row-level security hides nothing.
pub async fn checksums(client: &mut Client) -> Result<Vec<TableChecksum>> {
    let tx = client.build_transaction().read_only(true).start().await?;
    crate::db::set_caller(&tx, &crate::caller::Grant::ALL).await?;
    let mut sums = Vec::with_capacity(TABLES.len());
    for (table, key) in TABLES {
        sums.push(table_checksum(&tx, table, key).await?);
    }
    tx.rollback().await?;
    Ok(sums)
}

async fn table_checksum(
    client: &impl GenericClient,
    table: &'static str,
    key: &str,
) -> Result<TableChecksum> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {key})), '') \
                 FROM {table} t"
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot checksum {table}"))?;
    Ok(TableChecksum {
        table,
        rows: row.get(0),
        md5: row.get(1),
    })
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn copy_text_escaping() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\tb\\c\nd\re"), "a\\tb\\\\c\\nd\\re");
    }
}
