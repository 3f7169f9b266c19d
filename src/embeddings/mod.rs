//! The seam between tools and embedding models: a query that declares
//! `--@ embed <vector> from <text>` receives the vector an [`Embedder`] makes
//! of the caller's text, and the embedder's model id, so that it compares
//! only vectors of the same model.

use futures_util::future::BoxFuture;

pub trait Embedder: Send + Sync {
    /// Identifies the model; stored with every vector it produced.
    fn model_id(&self) -> &str;

    /// The embedding of `text`.
    fn embed<'a>(&'a self, text: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<f32>>>;
}
