//! all-MiniLM-L6-v2, run in-process with candle: 384 dimensions, mean
//! pooling over the attention mask, L2-normalised, inputs truncated to 256
//! tokens (the model's training length).
//!
//! [`LocalEmbedder::open`] only checks that the model folder holds the three
//! files, so a server starts at once; the model loads (sha256-checked, about
//! 90 MB) the first time it is needed, once however many calls ask at the
//! same moment. `sqlmcp serve` starts that load in the background as it
//! starts serving, so the first search seldom waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Stored with every vector this model makes.
pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// Longer inputs are cut to this many tokens.
pub const MAX_TOKENS: usize = 256;

/// The files the model is made of, with the sha256 scripts/fetch-model checks too.
const FILES: [(&str, &str); 3] = [
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
];

const FETCH_HINT: &str = "run scripts/fetch-model, and point --model-dir (SQLMCP_MODEL_DIR) at the \
     folder it prints; or serve without semantic search: --embedding-provider none";

pub struct LocalEmbedder {
    dir: PathBuf,
    /// The loaded model, or why it could not load (kept: the files do not
    /// heal by themselves, and re-reading 90 MB per call would not help).
    model: tokio::sync::OnceCell<Result<Arc<Model>, String>>,
    loads: AtomicUsize,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
}

impl LocalEmbedder {
    /// Checks that `dir` holds the model's files; loads nothing yet.
    pub fn open(dir: &Path) -> Result<LocalEmbedder> {
        for (name, _) in FILES {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "the local embedding model is not in {}: {name} is missing; {FETCH_HINT}",
                    dir.display()
                );
            }
        }
        Ok(LocalEmbedder {
            dir: dir.to_owned(),
            model: tokio::sync::OnceCell::new(),
            loads: AtomicUsize::new(0),
        })
    }

    /// How many times the model was read from disk (at most once).
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::Relaxed)
    }

    async fn model(&self) -> Result<Arc<Model>> {
        self.model
            .get_or_init(|| async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                let dir = self.dir.clone();
                let started = std::time::Instant::now();
                let loaded = tokio::task::spawn_blocking(move || load(&dir))
                    .await
                    .map_err(|err| anyhow!("the model loader stopped: {err}"))
                    .and_then(|result| result);
                match loaded {
                    Ok(model) => {
                        tracing::info!(
                            model = MODEL_ID,
                            folder = %self.dir.display(),
                            millis = started.elapsed().as_millis() as u64,
                            "embedding model loaded"
                        );
                        Ok(Arc::new(model))
                    }
                    Err(err) => {
                        let message = format!("{err:#}");
                        tracing::error!(error = %message, "embedding model failed to load");
                        Err(message)
                    }
                }
            })
            .await
            .clone()
            .map_err(|message| anyhow!(message))
    }
}

impl super::Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    /// Loads the model unless it is loaded; every caller waits for the same load.
    fn warm_up(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { self.model().await.map(drop) })
    }

    fn embed_batch<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let model = self.model().await?;
            let texts = texts.to_vec();
            tokio::task::spawn_blocking(move || encode(&model, texts))
                .await
                .map_err(|err| anyhow!("the embedding task stopped: {err}"))?
        })
    }
}

/// Reads and checks the files, then builds the model.
fn load(dir: &Path) -> Result<Model> {
    let read = |name: &str, expected: &str| -> Result<Vec<u8>> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read {}; {FETCH_HINT}", path.display()))?;
        let actual = format!("{:x}", Sha256::digest(&bytes));
        if actual != expected {
            bail!(
                "{} is corrupt (sha256 {actual}, expected {expected}); {FETCH_HINT}",
                path.display()
            );
        }
        Ok(bytes)
    };
    let [config, tokenizer, weights] = FILES.map(|(name, sha256)| read(name, sha256));
    let config: Config = serde_json::from_slice(&config?).context("config.json")?;
    let mut tokenizer =
        Tokenizer::from_bytes(tokenizer?).map_err(|err| anyhow!("tokenizer.json: {err}"))?;
    // tokenizer.json pads and truncates to 128; the model was trained on 256
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|err| anyhow!("tokenizer.json: {err}"))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    let weights = weights?;
    let vb = VarBuilder::from_slice_safetensors(&weights, DTYPE, &Device::Cpu)
        .context("model.safetensors")?;
    let bert = BertModel::load(vb, &config).context("model.safetensors")?;
    Ok(Model { bert, tokenizer })
}

/// Tokenises, runs the model, mean-pools over the real (unpadded) tokens and
/// L2-normalises.
fn encode(model: &Model, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let encodings = model
        .tokenizer
        .encode_batch(texts, true)
        .map_err(|err| anyhow!("cannot tokenise: {err}"))?;
    let (rows, length) = (encodings.len(), encodings[0].len());
    let mut ids = Vec::with_capacity(rows * length);
    let mut mask = Vec::with_capacity(rows * length);
    for encoding in &encodings {
        ids.extend_from_slice(encoding.get_ids());
        mask.extend_from_slice(encoding.get_attention_mask());
    }
    let device = Device::Cpu;
    let ids = Tensor::from_vec(ids, (rows, length), &device)?;
    let mask = Tensor::from_vec(mask, (rows, length), &device)?;
    let token_types = ids.zeros_like()?;
    let hidden = model.bert.forward(&ids, &token_types, Some(&mask))?;
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let mean = hidden
        .broadcast_mul(&mask)?
        .sum(1)?
        .broadcast_div(&mask.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
}
