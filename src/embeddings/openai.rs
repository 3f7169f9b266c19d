//! One client for every OpenAI-shaped embeddings API:
//! `POST {url}/embeddings` with `{"model", "input": [...], "encoding_format": "float"}`.
//!
//! - OpenAI: `--embedding-url https://api.openai.com/v1`, key as `Authorization: Bearer`.
//! - Azure OpenAI: the deployment's URL
//!   (`https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT`) and
//!   `--embedding-api-version`, which adds `?api-version=` and sends the key
//!   as `api-key`.
//! - Ollama (`http://localhost:11434/v1`), vLLM and text-embeddings-inference
//!   (`http://HOST/v1`): no key needed.
//!
//! Answers in OpenAI's shape (`data[].embedding`, by `index`) and in
//! Ollama's native shape (`embeddings[]`) are both read. Every vector must
//! have the configured length.
//!
//! Failures: 429 and 5xx answers, timeouts and lost connections are retried
//! a bounded number of times, waiting as `Retry-After` (or Azure's
//! `retry-after-ms`) says, or with exponential backoff and jitter; other
//! answers fail at once. After [`Config::breaker_failures`] failed calls in a
//! row a circuit breaker fails calls at once, for a cool-down that starts at
//! half a second and doubles up to [`Config::breaker_cool_down`] (5 s).
//! The API key is never logged nor put in an error message.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::breaker::Breaker;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Config {
    /// The API base; `/embeddings` is appended.
    pub url: String,
    pub model: String,
    /// The length of every vector.
    pub dimensions: usize,
    /// Send `dimensions` with each request (text-embedding-3 models).
    pub request_dimensions: bool,
    pub api_key: Option<Secret>,
    /// Azure OpenAI's `api-version`; also sends the key as `api-key`.
    pub api_version: Option<String>,
    /// One request's time limit.
    pub timeout: Duration,
    /// Retries after a retryable failure.
    pub retries: u32,
    /// First backoff; doubles per retry, with jitter, up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this fails the call instead of waiting.
    pub max_retry_after: Duration,
    /// Failed calls in a row that open the circuit breaker.
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
    /// Texts per request.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            model: String::new(),
            dimensions: 0,
            request_dimensions: false,
            api_key: None,
            api_version: None,
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cool_down: Duration::from_secs(5),
            max_batch: 64,
        }
    }
}

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    model_id: String,
    config: Config,
    breaker: Breaker,
}

#[derive(serde::Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

/// OpenAI's shape (`data`) or Ollama's native one (`embeddings`).
#[derive(Deserialize)]
struct Response {
    data: Option<Vec<Item>>,
    embeddings: Option<Vec<Vec<f32>>>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    index: Option<usize>,
}

/// How one attempt ended, when it did not succeed.
enum Failure {
    /// Worth another attempt, after the given wait (if the server named one).
    Retryable(String, Option<Duration>),
    Final(String),
}

impl OpenAiEmbedder {
    pub fn new(config: Config) -> Result<OpenAiEmbedder> {
        let base = config.url.trim_end_matches('/');
        let mut endpoint = reqwest::Url::parse(&format!("{base}/embeddings"))
            .map_err(|err| anyhow!("--embedding-url {:?} is not a URL: {err}", config.url))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            bail!(
                "--embedding-url must be http or https, got {:?}",
                config.url
            );
        }
        if let Some(version) = &config.api_version {
            endpoint
                .query_pairs_mut()
                .append_pair("api-version", version);
        }
        if config.model.trim().is_empty() {
            bail!("--embedding-model must not be empty");
        }
        if config.dimensions == 0 {
            bail!("--embedding-dimensions must be at least 1");
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()?;
        // The same model asked for shorter vectors makes different vectors.
        let model_id = if config.request_dimensions {
            format!("{}@{}", config.model, config.dimensions)
        } else {
            config.model.clone()
        };
        Ok(OpenAiEmbedder {
            client,
            endpoint,
            model_id,
            breaker: Breaker::new(config.breaker_failures, config.breaker_cool_down),
            config,
        })
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if let Err(open) = self.breaker.admit() {
            bail!(
                "the embedding provider at {} failed {} calls in a row; not calling it for another {:.0}s",
                self.host(),
                open.failures_in_a_row,
                open.retry_in.as_secs_f64().ceil()
            );
        }
        let mut attempt = 0;
        let outcome = loop {
            match self.attempt(texts).await {
                Ok(vectors) => break Ok(vectors),
                Err(Failure::Final(message)) => break Err(message),
                Err(Failure::Retryable(message, wait)) => {
                    if attempt >= self.config.retries {
                        break Err(format!(
                            "{message} (gave up after {} attempts)",
                            attempt + 1
                        ));
                    }
                    let wait = wait.unwrap_or_else(|| self.backoff(attempt));
                    if wait > self.config.max_retry_after {
                        break Err(format!(
                            "{message}; it asks to retry after {:.0}s, longer than this server waits",
                            wait.as_secs_f64()
                        ));
                    }
                    tracing::warn!(
                        provider = %self.host(),
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        error = %message,
                        "embedding request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        };
        match outcome {
            Ok(vectors) => {
                self.breaker.succeeded();
                Ok(vectors)
            }
            Err(message) => {
                self.breaker.failed();
                Err(anyhow!(self.redact(message)))
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let body = Request {
            model: &self.config.model,
            input: texts,
            encoding_format: "float",
            dimensions: self
                .config
                .request_dimensions
                .then_some(self.config.dimensions),
        };
        let mut request = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.config.api_key {
            let key = key.expose();
            request = match self.config.api_version {
                Some(_) => request.header("api-key", key),
                None => request.bearer_auth(key),
            };
        }
        let response = request.send().await.map_err(|err| {
            let what = if err.is_timeout() {
                format!(
                    "the embedding provider at {} did not answer within {:.1}s",
                    self.host(),
                    self.config.timeout.as_secs_f64()
                )
            } else {
                format!(
                    "cannot reach the embedding provider at {}: {}",
                    self.host(),
                    error_chain(&err)
                )
            };
            Failure::Retryable(what, None)
        })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|err| {
            Failure::Retryable(
                format!(
                    "the embedding provider at {} broke off its answer: {}",
                    self.host(),
                    error_chain(&err)
                ),
                None,
            )
        })?;
        if !status.is_success() {
            let message = format!(
                "the embedding provider at {} answered {status}: {}",
                self.host(),
                excerpt(&bytes)
            );
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error();
            return Err(match retryable {
                true => Failure::Retryable(message, wait),
                false => Failure::Final(message),
            });
        }
        self.read(texts.len(), &bytes).map_err(Failure::Final)
    }

    /// Checks the answer: one vector per text, each of the configured length.
    fn read(&self, expected: usize, bytes: &[u8]) -> Result<Vec<Vec<f32>>, String> {
        let malformed = |why: String| {
            format!(
                "the embedding provider at {} sent an answer this server cannot read: {why}",
                self.host()
            )
        };
        let response: Response =
            serde_json::from_slice(bytes).map_err(|err| malformed(err.to_string()))?;
        let vectors = match (response.data, response.embeddings) {
            (Some(mut items), _) => {
                if items.iter().all(|item| item.index.is_some()) {
                    items.sort_by_key(|item| item.index);
                    if items
                        .iter()
                        .enumerate()
                        .any(|(i, item)| item.index != Some(i))
                    {
                        return Err(malformed("the `index` values are not 0..n".to_owned()));
                    }
                }
                items.into_iter().map(|item| item.embedding).collect()
            }
            (None, Some(embeddings)) => embeddings,
            (None, None) => return Err(malformed("no `data` nor `embeddings`".to_owned())),
        };
        if vectors.len() != expected {
            return Err(malformed(format!(
                "{} vectors for {expected} texts",
                vectors.len()
            )));
        }
        if let Some(wrong) = vectors.iter().find(|v| v.len() != self.config.dimensions) {
            return Err(format!(
                "model {} made a {}-dimensional vector, but --embedding-dimensions is {}",
                self.config.model,
                wrong.len(),
                self.config.dimensions
            ));
        }
        Ok(vectors)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.backoff_max);
        // "equal jitter": half fixed, half random, so retries of many
        // callers spread out but never come at once
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half = ceiling / 2;
        half + half.mul_f64((random % 1_000) as f64 / 1_000.0)
    }

    fn host(&self) -> String {
        match self.endpoint.port() {
            Some(port) => format!("{}:{port}", self.endpoint.host_str().unwrap_or("?")),
            None => self.endpoint.host_str().unwrap_or("?").to_owned(),
        }
    }

    /// Removes the API key from a message, should a server have echoed it.
    fn redact(&self, message: String) -> String {
        match &self.config.api_key {
            Some(key) if !key.expose().is_empty() => message.replace(key.expose(), "***"),
            _ => message,
        }
    }
}

impl super::Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.config.dimensions
    }

    fn max_batch(&self) -> usize {
        self.config.max_batch
    }

    fn embed_batch<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(self.call(texts))
    }
}

/// `retry-after-ms` (Azure), or `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1_000.0).ok();
    }
    let value = header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The start of an error body, on one line.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(no body)".to_owned(),
        None => text,
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_retry_after_in_seconds_milliseconds_and_http_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
        let wait = retry_after(&headers(&[("retry-after", &soon)])).unwrap();
        assert!(wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn api_keys_do_not_show_in_debug_output() {
        let config = Config {
            api_key: Some(Secret::new("sk-secret-123")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("sk-secret-123"));
    }

    #[test]
    fn backoff_doubles_within_its_ceiling() {
        let embedder = OpenAiEmbedder::new(Config {
            url: "http://127.0.0.1:9".to_owned(),
            model: "m".to_owned(),
            dimensions: 3,
            ..Config::default()
        })
        .unwrap();
        for attempt in 0..8 {
            let wait = embedder.backoff(attempt);
            let ceiling = (Duration::from_millis(250) * (1 << attempt)).min(Duration::from_secs(4));
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
    }
}
