//! Embedding models: text in, vector out.
//!
//! A query that declares `--@ embed <vector> from <text>` receives the vector
//! an [`Embedder`] makes of the caller's text, and the embedder's model id,
//! so that it compares only vectors of the same model. `sqlmcp embed` uses
//! the same embedders to fill `retail.product_description_embeddings`.
//!
//! Providers, chosen by [`Settings::embedding_provider`]:
//! - [`local`]: all-MiniLM-L6-v2 in-process (candle), the default;
//! - [`openai`]: any server speaking OpenAI's `POST /embeddings` (OpenAI,
//!   Azure OpenAI, Ollama, vLLM, text-embeddings-inference).

pub mod breaker;
pub mod local;
pub mod openai;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub trait Embedder: Send + Sync {
    /// Identifies the model; stored with every vector it produced.
    fn model_id(&self) -> &str;

    /// The length of every vector this model makes.
    fn dimensions(&self) -> usize;

    /// How many texts one [`Embedder::embed_batch`] call should carry at most.
    fn max_batch(&self) -> usize {
        32
    }

    /// The embeddings of `texts`, in order.
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>>;

    /// Gets ready to embed (a local model loads its weights); errors are
    /// also reported by the embedding calls that follow.
    fn warm_up(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// The embedding of one text.
    fn embed<'a>(&'a self, text: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<f32>>> {
        Box::pin(async move {
            let texts = [text.to_owned()];
            let mut vectors = self.embed_batch(&texts).await?;
            vectors
                .pop()
                .ok_or_else(|| anyhow::anyhow!("the model returned no vector"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// all-MiniLM-L6-v2, in-process; no network, no API key.
    Local,
    /// An OpenAI-shaped `POST {url}/embeddings` API.
    Openai,
    /// No embedding model: tools that need one say so when called.
    None,
}

/// How to reach the embedding model; shared by `serve`, `call` and `embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Which embedding model embeds text.
    #[arg(
        long,
        env = "SQLMCP_EMBEDDING_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    pub embedding_provider: Provider,
    /// local: the folder with config.json, tokenizer.json and model.safetensors
    /// (scripts/fetch-model fills it) [default: $XDG_CACHE_HOME/sqlmcp/models/all-MiniLM-L6-v2,
    /// or ~/.cache/…]
    #[arg(long, env = "SQLMCP_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// openai: the API base, to which `/embeddings` is appended, e.g.
    /// https://api.openai.com/v1, http://localhost:11434/v1 (Ollama), or
    /// https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT (Azure).
    #[arg(long, env = "SQLMCP_EMBEDDING_URL")]
    pub embedding_url: Option<String>,
    /// openai: the model name sent with every request (and stored with every vector).
    #[arg(long, env = "SQLMCP_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// openai: the length of the model's vectors; responses of another length are refused.
    #[arg(long, env = "SQLMCP_EMBEDDING_DIMENSIONS")]
    pub embedding_dimensions: Option<usize>,
    /// openai: ask the model for --embedding-dimensions (OpenAI's text-embedding-3
    /// models shorten their vectors on request).
    #[arg(long, env = "SQLMCP_EMBEDDING_REQUEST_DIMENSIONS")]
    pub embedding_request_dimensions: bool,
    /// openai: the API key; sent as `Authorization: Bearer`, or as `api-key`
    /// with --embedding-api-version (Azure). Never logged.
    #[arg(long, env = "SQLMCP_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<crate::secret::Secret>,
    /// openai: Azure OpenAI's `api-version` query parameter, e.g. 2024-10-21.
    #[arg(long, env = "SQLMCP_EMBEDDING_API_VERSION")]
    pub embedding_api_version: Option<String>,
    /// openai: milliseconds one request may take.
    #[arg(long, env = "SQLMCP_EMBEDDING_TIMEOUT_MS", default_value_t = 10_000)]
    pub embedding_timeout_ms: u64,
    /// openai: retries after a 429, a 5xx, a timeout or a lost connection.
    #[arg(long, env = "SQLMCP_EMBEDDING_RETRIES", default_value_t = 3)]
    pub embedding_retries: u32,
}

impl Settings {
    /// The default folder of the local model, as scripts/fetch-model fills it.
    pub fn default_model_dir() -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("sqlmcp/models/all-MiniLM-L6-v2")
    }

    /// Builds the configured embedder; `None` for `--embedding-provider none`.
    /// Fails with what is wrong and how to fix it: a missing model folder, a
    /// missing URL or dimension.
    pub fn build(&self) -> anyhow::Result<Option<Arc<dyn Embedder>>> {
        Ok(match self.embedding_provider {
            Provider::None => None,
            Provider::Local => {
                let dir = self
                    .model_dir
                    .clone()
                    .unwrap_or_else(Self::default_model_dir);
                Some(Arc::new(local::LocalEmbedder::open(&dir)?))
            }
            Provider::Openai => {
                let need = |value: &Option<String>, flag: &str| {
                    value
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("--embedding-provider openai needs {flag}"))
                };
                let dimensions = self.embedding_dimensions.ok_or_else(|| {
                    anyhow::anyhow!(
                        "--embedding-provider openai needs --embedding-dimensions \
                         (the length of the model's vectors, e.g. 384 or 1536)"
                    )
                })?;
                Some(Arc::new(openai::OpenAiEmbedder::new(openai::Config {
                    url: need(&self.embedding_url, "--embedding-url")?,
                    model: need(&self.embedding_model, "--embedding-model")?,
                    dimensions,
                    request_dimensions: self.embedding_request_dimensions,
                    api_key: self.embedding_api_key.clone(),
                    api_version: self.embedding_api_version.clone(),
                    timeout: Duration::from_millis(self.embedding_timeout_ms),
                    retries: self.embedding_retries,
                    ..openai::Config::default()
                })?))
            }
        })
    }
}
