//! Embedding providers: the OpenAI-shaped HTTP client against a local HTTP
//! server that answers as OpenAI, Azure OpenAI and Ollama do (and as they do
//! when they fail); the local model against reference vectors computed by
//! an independent implementation (scripts/reference-vectors.py).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlmcp::embeddings::Embedder;
use sqlmcp::embeddings::local::{DIMENSIONS, LocalEmbedder, MODEL_ID};
use sqlmcp::embeddings::openai::{Config, OpenAiEmbedder};
use sqlmcp::secret::Secret;

use crate::helpers::{local_embedder, model_dir};

const DIMS: usize = 4;

/// What the fake provider does with the next request.
#[derive(Clone)]
enum Answer {
    /// OpenAI's shape, `index` in reverse order.
    Vectors,
    /// Ollama's native shape.
    OllamaNative,
    Status(u16, Vec<(&'static str, String)>, String),
    Body(String),
    /// Vectors one element longer than asked.
    WrongLength,
    Sleep(Duration),
}

#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(script: Vec<Answer>) -> (Fake, String) {
        let fake = Fake {
            script: Arc::new(Mutex::new(script.into())),
            ..Fake::default()
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A vector that tells which text it is of: [i, len, 0, 1] before normalising.
fn vector_of(i: usize, text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    v[0] = i as f32;
    v[1] = text.len() as f32;
    v[dims - 1] = 1.0;
    v
}

async fn answer(State(fake): State<Fake>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Value = serde_json::from_slice(&axum::body::to_bytes(body, 1 << 20).await.unwrap())
        .unwrap_or(Value::Null);
    fake.seen.lock().unwrap().push(Seen {
        path_and_query: parts.uri.path_and_query().unwrap().to_string(),
        headers: parts.headers,
        body: body.clone(),
    });
    let texts: Vec<String> = body["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let next = fake.script.lock().unwrap().pop_front();
    let vectors = |dims: usize| -> Vec<Value> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(i, t, dims)}))
            .rev()
            .collect()
    };
    match next.unwrap_or(Answer::Vectors) {
        Answer::Vectors => axum::Json(json!({"object": "list", "model": body["model"], "data": vectors(DIMS)}))
            .into_response(),
        Answer::OllamaNative => axum::Json(json!({
            "model": body["model"],
            "embeddings": texts.iter().enumerate().map(|(i, t)| vector_of(i, t, DIMS)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Answer::WrongLength => axum::Json(json!({"data": vectors(DIMS + 1)})).into_response(),
        Answer::Status(code, headers, body) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Answer::Body(body) => ([("content-type", "application/json")], body).into_response(),
        Answer::Sleep(wait) => {
            tokio::time::sleep(wait).await;
            axum::Json(json!({"data": vectors(DIMS)})).into_response()
        }
    }
}

fn config(url: String) -> Config {
    Config {
        url,
        model: "text-embedding-test".to_owned(),
        dimensions: DIMS,
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..Config::default()
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn openai_shape_bearer_key_and_vectors_in_input_order() {
    let (fake, base) = Fake::start(vec![]).await;
    let embedder = OpenAiEmbedder::new(Config {
        api_key: Some(Secret::new("sk-test-123")),
        ..config(format!("{base}/v1/"))
    })
    .unwrap();
    let vectors = embedder
        .embed_batch(&texts(&["a", "bb", "ccc"]))
        .await
        .unwrap();
    assert_eq!(
        vectors,
        [
            vector_of(0, "a", DIMS),
            vector_of(1, "bb", DIMS),
            vector_of(2, "ccc", DIMS)
        ],
        "answers come in reverse index order; the client puts them back"
    );
    assert_eq!(embedder.model_id(), "text-embedding-test");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/embeddings");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-test-123");
    assert!(seen[0].headers.get("api-key").is_none());
    assert_eq!(
        seen[0].body,
        json!({"model": "text-embedding-test", "input": ["a", "bb", "ccc"], "encoding_format": "float"})
    );
}

#[tokio::test]
async fn azure_shape_api_version_and_api_key_header() {
    let (fake, base) = Fake::start(vec![]).await;
    let embedder = OpenAiEmbedder::new(Config {
        api_key: Some(Secret::new("azure-key")),
        api_version: Some("2024-10-21".to_owned()),
        request_dimensions: true,
        ..config(format!("{base}/openai/deployments/emb-small"))
    })
    .unwrap();
    let vector = embedder.embed("hello").await.unwrap();
    assert_eq!(vector, vector_of(0, "hello", DIMS));
    assert_eq!(
        embedder.model_id(),
        "text-embedding-test@4",
        "shortened vectors are their own model"
    );
    let seen = &fake.seen()[0];
    assert_eq!(
        seen.path_and_query,
        "/openai/deployments/emb-small/embeddings?api-version=2024-10-21"
    );
    assert_eq!(seen.headers["api-key"], "azure-key");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["dimensions"], 4);
}

#[tokio::test]
async fn ollama_without_a_key_in_both_answer_shapes() {
    let (fake, base) = Fake::start(vec![Answer::Vectors, Answer::OllamaNative]).await;
    let embedder = OpenAiEmbedder::new(config(format!("{base}/v1"))).unwrap();
    for _ in 0..2 {
        let vectors = embedder.embed_batch(&texts(&["x", "yy"])).await.unwrap();
        assert_eq!(vectors, [vector_of(0, "x", DIMS), vector_of(1, "yy", DIMS)]);
    }
    for seen in fake.seen() {
        assert!(seen.headers.get("authorization").is_none());
        assert!(seen.headers.get("api-key").is_none());
        assert!(seen.body.get("dimensions").is_none());
    }
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_it_asks_for() {
    let (fake, base) = Fake::start(vec![
        Answer::Status(
            429,
            vec![("retry-after", "1".to_owned())],
            "slow down".to_owned(),
        ),
        Answer::Status(
            429,
            vec![("retry-after-ms", "200".to_owned())],
            "slow down".to_owned(),
        ),
    ])
    .await;
    let embedder = OpenAiEmbedder::new(config(base)).unwrap();
    let started = Instant::now();
    embedder.embed("x").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(fake.seen().len(), 3);
    assert!(
        waited >= Duration::from_millis(1_200),
        "waited {waited:?}, not the 1 s + 200 ms the provider asked for"
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_the_limit_fails_at_once() {
    let (fake, base) = Fake::start(vec![Answer::Status(
        429,
        vec![("retry-after", "3600".to_owned())],
        "quota exceeded".to_owned(),
    )])
    .await;
    let embedder = OpenAiEmbedder::new(config(base)).unwrap();
    let err = embedder.embed("x").await.unwrap_err().to_string();
    assert!(
        err.contains("429") && err.contains("retry after 3600s"),
        "{err}"
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let failure = || Answer::Status(500, vec![], "internal error".to_owned());
    let (fake, base) = Fake::start(vec![failure(), failure()]).await;
    let embedder = OpenAiEmbedder::new(config(base.clone())).unwrap();
    embedder.embed("x").await.unwrap();
    assert_eq!(fake.seen().len(), 3, "two failures, then success");

    let (fake, base) = Fake::start(vec![failure(); 10]).await;
    let embedder = OpenAiEmbedder::new(Config {
        retries: 2,
        ..config(base)
    })
    .unwrap();
    let err = embedder.embed("x").await.unwrap_err().to_string();
    assert_eq!(fake.seen().len(), 3);
    assert!(
        err.contains("500")
            && err.contains("internal error")
            && err.contains("gave up after 3 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    let (fake, base) = Fake::start(vec![Answer::Sleep(Duration::from_secs(5))]).await;
    let embedder = OpenAiEmbedder::new(Config {
        timeout: Duration::from_millis(200),
        retries: 0,
        ..config(base)
    })
    .unwrap();
    let started = Instant::now();
    let err = embedder.embed("x").await.unwrap_err().to_string();
    assert!(err.contains("did not answer within 0.2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn malformed_and_wrong_length_answers_are_refused_without_retrying() {
    let (fake, base) = Fake::start(vec![
        Answer::Body("{\"data\": [{\"embedding\": \"not numbers\"}]}".to_owned()),
        Answer::Body("<html>gateway</html>".to_owned()),
        Answer::Body("{\"data\": []}".to_owned()),
        Answer::WrongLength,
    ])
    .await;
    let embedder = OpenAiEmbedder::new(Config {
        breaker_failures: 100,
        ..config(base)
    })
    .unwrap();
    for expected in [
        "cannot read",
        "cannot read",
        "0 vectors for 1 texts",
        "made a 5-dimensional vector, but --embedding-dimensions is 4",
    ] {
        let err = embedder.embed("x").await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    assert_eq!(fake.seen().len(), 4, "none of these is retried");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_never_show_the_key() {
    let key = "sk-very-secret-key";
    let (fake, base) = Fake::start(vec![Answer::Status(
        401,
        vec![],
        format!("{{\"error\": \"Incorrect API key provided: {key}\"}}"),
    )])
    .await;
    let embedder = OpenAiEmbedder::new(Config {
        api_key: Some(Secret::new(key)),
        ..config(base)
    })
    .unwrap();
    let err = format!("{:#}", embedder.embed("x").await.unwrap_err());
    assert!(
        err.contains("401") && err.contains("Incorrect API key provided: ***"),
        "{err}"
    );
    assert!(!err.contains(key), "{err}");
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn a_dead_provider_opens_the_breaker_and_then_fails_fast() {
    let failure = || Answer::Status(503, vec![], "unavailable".to_owned());
    let (fake, base) = Fake::start(vec![failure(); 10]).await;
    let embedder = OpenAiEmbedder::new(Config {
        retries: 0,
        breaker_failures: 2,
        breaker_cool_down: Duration::from_millis(300),
        ..config(base)
    })
    .unwrap();
    for _ in 0..2 {
        assert!(embedder.embed("x").await.is_err());
    }
    let started = Instant::now();
    let err = embedder.embed("x").await.unwrap_err().to_string();
    assert!(err.contains("failed 2 calls in a row"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(50), "failed fast");
    assert_eq!(fake.seen().len(), 2, "the open breaker sent nothing");

    // after the cool-down one trial goes through; it fails, so it opens again
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(embedder.embed("x").await.is_err());
    assert_eq!(fake.seen().len(), 3);
    assert!(
        embedder
            .embed("x")
            .await
            .unwrap_err()
            .to_string()
            .contains("in a row")
    );
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn an_unreachable_provider_is_named_in_the_error() {
    // a port nothing listens on
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let embedder = OpenAiEmbedder::new(Config {
        retries: 1,
        ..config(format!("http://127.0.0.1:{port}/v1"))
    })
    .unwrap();
    let err = embedder.embed("x").await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "cannot reach the embedding provider at 127.0.0.1:{port}"
        )) && err.contains("gave up after 2 attempts"),
        "{err}"
    );
}

#[test]
fn configuration_mistakes_are_named() {
    for (config, expected) in [
        (config("ftp://host".to_owned()), "must be http or https"),
        (config("not a url".to_owned()), "is not a URL"),
        (
            Config {
                dimensions: 0,
                ..config("http://h".to_owned())
            },
            "at least 1",
        ),
    ] {
        let err = OpenAiEmbedder::new(config).err().unwrap().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

// --- the local model ---------------------------------------------------------

#[derive(serde::Deserialize)]
struct Reference {
    model: String,
    tolerance: f32,
    vectors: Vec<ReferenceVector>,
}

#[derive(serde::Deserialize)]
struct ReferenceVector {
    text: String,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("../fixtures/minilm_reference.json")).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test]
async fn local_vectors_match_an_independent_implementation() {
    let reference = reference();
    assert_eq!(reference.model, MODEL_ID);
    let embedder = local_embedder();
    for item in &reference.vectors {
        let vector = embedder.embed(&item.text).await.unwrap();
        assert_eq!(vector.len(), DIMENSIONS);
        let difference = max_difference(&vector, &item.embedding);
        assert!(
            difference <= reference.tolerance,
            "{:?}: differs by {difference}",
            item.text.chars().take(40).collect::<String>()
        );
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[tokio::test]
async fn local_vectors_are_deterministic_and_independent_of_batching() {
    let reference = reference();
    let texts: Vec<String> = reference.vectors.iter().map(|v| v.text.clone()).collect();
    let embedder = local_embedder();
    // in one padded batch (the long text makes every other one padded)
    let batch = embedder.embed_batch(&texts).await.unwrap();
    let again = embedder.embed_batch(&texts).await.unwrap();
    assert_eq!(batch, again, "bit for bit the same");
    for (vector, item) in batch.iter().zip(&reference.vectors) {
        assert!(max_difference(vector, &item.embedding) <= reference.tolerance);
    }
}

#[tokio::test]
async fn concurrent_first_calls_load_the_model_once() {
    let embedder = Arc::new(LocalEmbedder::open(&model_dir()).unwrap());
    assert_eq!(embedder.loads(), 0, "opening loads nothing");
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let embedder = embedder.clone();
            tokio::spawn(async move { embedder.embed(&format!("query {i}")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().len(), DIMENSIONS);
    }
    assert_eq!(embedder.loads(), 1);
}

#[tokio::test]
async fn a_missing_or_corrupt_model_is_named_with_the_fix() {
    let missing = std::env::temp_dir().join(format!("sqlmcp-no-model-{}", std::process::id()));
    let err = LocalEmbedder::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("config.json is missing") && err.contains("scripts/fetch-model"),
        "{err}"
    );

    // the real weights and tokenizer, and a config.json with one byte changed
    let corrupt = std::env::temp_dir().join(format!("sqlmcp-bad-model-{}", std::process::id()));
    std::fs::create_dir_all(&corrupt).unwrap();
    let source = model_dir();
    for name in ["tokenizer.json", "model.safetensors"] {
        let _ = std::fs::remove_file(corrupt.join(name));
        std::os::unix::fs::symlink(source.join(name), corrupt.join(name)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    std::fs::write(corrupt.join("config.json"), config.replace("384", "385")).unwrap();
    let embedder = LocalEmbedder::open(&corrupt).unwrap();
    for _ in 0..2 {
        let err = embedder.embed("x").await.unwrap_err().to_string();
        assert!(
            err.contains("config.json is corrupt") && err.contains("scripts/fetch-model"),
            "{err}"
        );
    }
    assert_eq!(
        embedder.loads(),
        1,
        "a failed load is not repeated per call"
    );
    std::fs::remove_dir_all(&corrupt).unwrap();
}
