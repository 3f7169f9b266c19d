//! `sqlmcp embed`: gives every product a current vector of the configured
//! model in `retail.product_description_embeddings`.
//!
//! A product needs one when it has no vector of that model, or when the text
//! its vector was made of changed (`description_hash` is the md5 of that
//! text). Products are read in `product_id` order, a batch at a time; each
//! batch is embedded and written in a transaction of its own, so an
//! interrupted run keeps what it finished and the next run does the rest.
//! A run with nothing to do changes nothing.

use anyhow::{Context, Result};

use pgvector::Vector;
use tokio_postgres::Client;

use crate::embeddings::Embedder;

/// What a product's vector is made of: its name and its description.
const TEXT: &str = "p.product_name || '. ' || p.product_description";

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub model: String,
    pub products: i64,
    /// Products whose vector was missing or stale, and are now current.
    pub embedded: i64,
}

/// Products after `$2` (by id) that need a vector of model `$1`.
fn pending_sql(limit: &str) -> String {
    format!(
        "SELECT p.product_id, {TEXT} AS text, md5({TEXT}) AS hash \
         FROM retail.products p \
         LEFT JOIN retail.product_description_embeddings e \
           ON e.product_id = p.product_id AND e.model_id = $1 \
         WHERE p.product_id > $2 \
           AND (e.product_id IS NULL OR e.description_hash IS DISTINCT FROM md5({TEXT})) \
         ORDER BY p.product_id {limit}"
    )
}

pub async fn run(
    client: &mut Client,
    embedder: &dyn Embedder,
    batch_size: usize,
    show_progress: bool,
) -> Result<Report> {
    let model = embedder.model_id().to_owned();
    let batch_size = batch_size.clamp(1, embedder.max_batch().max(1));
    let (products, pending) = count(client, &model).await?;
    let progress = crate::progress::bar(
        show_progress && pending > 0,
        pending as u64,
        "embedding",
        "products",
    );
    let select = client
        .prepare(&pending_sql("LIMIT $3"))
        .await
        .context("cannot read the products")?;
    let upsert = client
        .prepare(UPSERT)
        .await
        .context("cannot prepare the write of the vectors")?;

    let mut after = 0i32;
    let mut embedded = 0i64;
    loop {
        let rows = client
            .query(&select, &[&model, &after, &(batch_size as i64)])
            .await
            .context("cannot read the products")?;
        let Some(last) = rows.last() else { break };
        let first: i32 = rows[0].get(0);
        after = last.get(0);
        let batch = embed(embedder, &rows).await.with_context(|| {
            format!(
                "cannot embed products {first}..={after} with {model} ({embedded} embedded \
                 before; run sqlmcp embed again to go on from there)"
            )
        })?;
        let tx = client.transaction().await?;
        tx.execute(
            &upsert,
            &[&batch.ids, &model, &batch.vectors, &batch.hashes],
        )
        .await
        .context("cannot write the vectors")?;
        tx.commit().await.context("cannot write the vectors")?;
        embedded += batch.ids.len() as i64;
        progress.inc(batch.ids.len() as u64);
    }
    progress.finish_and_clear();
    Ok(Report {
        model,
        products,
        embedded,
    })
}

/// Writes a batch of vectors, replacing those of the same model.
const UPSERT: &str = "INSERT INTO retail.product_description_embeddings \
       (product_id, model_id, description_embedding, description_hash, last_updated) \
     SELECT id, $2, vector, hash, now() \
     FROM unnest($1::integer[], $3::vector[], $4::text[]) AS batch(id, vector, hash) \
     ON CONFLICT (product_id, model_id) DO UPDATE \
       SET description_embedding = excluded.description_embedding, \
           description_hash = excluded.description_hash, \
           last_updated = excluded.last_updated";

/// How many products there are, and how many lack a current vector of `model`.
async fn count(client: &Client, model: &str) -> Result<(i64, i64)> {
    let counts = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM retail.products), \
                        (SELECT count(*) FROM ({}) pending)",
                pending_sql("")
            ),
            &[&model, &0i32],
        )
        .await
        .context("cannot count the products to embed")?;
    Ok((counts.get(0), counts.get(1)))
}

/// One batch of products, embedded.
struct Batch {
    ids: Vec<i32>,
    vectors: Vec<Vector>,
    hashes: Vec<String>,
}

/// Embeds the descriptions of `rows` (id, text, hash).
async fn embed(embedder: &dyn Embedder, rows: &[tokio_postgres::Row]) -> Result<Batch> {
    let texts: Vec<String> = rows.iter().map(|row| row.get(1)).collect();
    let vectors = embedder.embed_batch(&texts).await?;
    anyhow::ensure!(
        vectors.len() == texts.len(),
        "{} returned {} vectors for {} texts",
        embedder.model_id(),
        vectors.len(),
        texts.len()
    );
    Ok(Batch {
        ids: rows.iter().map(|row| row.get(0)).collect(),
        vectors: vectors.into_iter().map(Vector::from).collect(),
        hashes: rows.iter().map(|row| row.get(2)).collect(),
    })
}

/// Whether an HNSW index serves searches over vectors of this length.
pub async fn has_index_for(client: &Client, dimensions: usize) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes \
              WHERE schemaname = 'retail' AND tablename = 'product_description_embeddings' \
                AND indexdef LIKE '%USING hnsw%' \
                AND indexdef LIKE '%vector(' || $1::text || ')%')",
            &[&(dimensions as i64).to_string()],
        )
        .await?;
    Ok(row.get(0))
}
