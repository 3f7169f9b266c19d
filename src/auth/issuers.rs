//! Verification keys of OAuth authorization servers (`--oauth-issuer`),
//! found through their metadata and fetched over HTTPS.
//!
//! - Discovery: RFC 8414's `/.well-known/oauth-authorization-server`, then
//!   OpenID Connect's `/.well-known/openid-configuration`; the document
//!   must name the configured issuer exactly, and its `jwks_uri` gives the
//!   keys.
//! - Only `https` URLs are fetched, or `http` to a loopback address.
//! - Keys are cached for the `max-age` of the JWKS response (within
//!   [`MIN_FRESH`]..[`MAX_FRESH`], [`DEFAULT_FRESH`] without one). A token
//!   with a `kid` the cache does not hold, or a stale cache, makes the
//!   issuer be asked again, at most once per `refetch_every` however many
//!   such tokens come, so a flood of made-up `kid`s cannot make the server
//!   hammer the issuer.
//! - When the issuer cannot be reached, the keys fetched last keep working;
//!   a successful fetch replaces them (a key the issuer dropped is dropped).
//! - Nothing here blocks start-up: the first fetch starts in the
//!   background, and a token that comes before it is done waits for it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;

/// Keys of an issuer whose JWKS response says nothing about caching.
pub const DEFAULT_FRESH: Duration = Duration::from_secs(300);
/// However short the response's `max-age`, keys are kept this long.
pub const MIN_FRESH: Duration = Duration::from_secs(30);
/// However long the response's `max-age`, keys are asked for again after
/// this long.
pub const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);
/// How long one request to an issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one issuer, by `kid`, with the algorithm each pins.
pub(super) type KeySet = HashMap<String, (DecodingKey, Algorithm)>;

/// The configured issuers.
pub struct Issuers {
    issuers: Vec<Issuer>,
    http: reqwest::Client,
    refetch_every: Duration,
}

struct Issuer {
    /// The issuer identifier, as tokens' `iss` must say it.
    url: String,
    cache: RwLock<Cache>,
    /// Held while a fetch is under way, so that one fetch serves everyone
    /// waiting; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Cache {
    keys: KeySet,
    /// Until when the keys are fresh; `None` until a fetch succeeded.
    fresh_until: Option<Instant>,
}

impl Issuers {
    /// Checks the URLs; fetches nothing yet (see [`Issuers::warm_up`]).
    pub fn new(urls: &[String], refetch_every: Duration) -> Result<Issuers> {
        if urls.is_empty() {
            bail!("--oauth-issuer names no issuer");
        }
        for url in urls {
            let parsed = reqwest::Url::parse(url)
                .with_context(|| format!("--oauth-issuer {url}: not a URL"))?;
            check_scheme(&parsed).with_context(|| format!("--oauth-issuer {url}"))?;
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // a redirect could lead from https to http
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client for the issuers")?;
        Ok(Issuers {
            issuers: urls
                .iter()
                .map(|url| Issuer {
                    // compared exactly, as RFC 8414 says (Auth0's ends in `/`)
                    url: url.clone(),
                    cache: RwLock::default(),
                    fetching: tokio::sync::Mutex::new(None),
                })
                .collect(),
            http,
            refetch_every,
        })
    }

    /// The issuer identifiers, for the protected resource's metadata.
    pub fn urls(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.url.clone()).collect()
    }

    /// Fetches every issuer's keys once; failures are logged, not fatal.
    pub async fn warm_up(&self) {
        for issuer in &self.issuers {
            issuer.refresh(&self.http, Duration::ZERO).await;
        }
    }

    /// The key for a token of issuer `iss` with key id `kid`.
    pub(super) async fn key(
        &self,
        iss: &str,
        kid: &str,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        let invalid = |reason: String| AuthError::InvalidToken(reason);
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.url == iss)
            .ok_or_else(|| invalid("wrong issuer".to_owned()))?;
        if let Some(key) = issuer.fresh_key(kid) {
            return Ok(key);
        }
        issuer.refresh(&self.http, self.refetch_every).await;
        issuer.any_key(kid).ok_or_else(|| {
            if issuer
                .cache
                .read()
                .expect("not poisoned")
                .fresh_until
                .is_none()
            {
                invalid(format!(
                    "the keys of {} could not be fetched yet; try again shortly",
                    issuer.url
                ))
            } else {
                invalid("unknown `kid`".to_owned())
            }
        })
    }
}

impl Issuer {
    fn fresh_key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let cache = self.cache.read().expect("not poisoned");
        if Instant::now() > cache.fresh_until? {
            return None;
        }
        cache.keys.get(kid).cloned()
    }

    /// A key however old: the issuer may be down.
    fn any_key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.cache
            .read()
            .expect("not poisoned")
            .keys
            .get(kid)
            .cloned()
    }

    /// Fetches the keys unless a fetch started less than `at_most_every`
    /// ago; callers that come during a fetch wait for it.
    async fn refresh(&self, http: &reqwest::Client, at_most_every: Duration) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < at_most_every) {
            return;
        }
        *last = Some(Instant::now());
        match fetch_keys(http, &self.url).await {
            Ok((keys, fresh_for)) => {
                tracing::info!(issuer = %self.url, keys = keys.len(), "fetched the issuer's keys");
                *self.cache.write().expect("not poisoned") = Cache {
                    keys,
                    fresh_until: Some(Instant::now() + fresh_for),
                };
            }
            Err(err) => {
                tracing::warn!(issuer = %self.url, error = format!("{err:#}"), "cannot fetch the issuer's keys; keeping those fetched before");
            }
        }
    }
}

/// `https`, or `http` to a loopback address.
fn check_scheme(url: &reqwest::Url) -> Result<()> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => bail!("{other}:// is not allowed: use https (http only to a loopback address)"),
    }
}

/// The issuer's metadata URLs: RFC 8414's, then OpenID Connect's.
fn metadata_urls(issuer: &str) -> Result<Vec<reqwest::Url>> {
    let parsed = reqwest::Url::parse(issuer)?;
    let path = parsed.path().trim_end_matches('/').to_owned();
    let mut rfc8414 = parsed.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = parsed;
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    Ok(vec![rfc8414, oidc])
}

/// The issuer's keys, and how long they are fresh.
async fn fetch_keys(http: &reqwest::Client, issuer: &str) -> Result<(KeySet, Duration)> {
    let jwks_uri = jwks_uri(http, issuer).await?;
    let response = http
        .get(jwks_uri.clone())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot fetch {jwks_uri}"))?;
    let fresh_for = max_age(response.headers())
        .unwrap_or(DEFAULT_FRESH)
        .clamp(MIN_FRESH, MAX_FRESH);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&capped(response).await?)
        .with_context(|| format!("{jwks_uri} is not a JWKS document"))?;
    let keys = super::usable_keys(&set, jwks_uri.as_ref(), false)?;
    Ok((keys, fresh_for))
}

/// The `jwks_uri` of the first metadata document that names `issuer`.
async fn jwks_uri(http: &reqwest::Client, issuer: &str) -> Result<reqwest::Url> {
    let mut failures = Vec::new();
    for url in metadata_urls(issuer)? {
        let document = match http.get(url.clone()).send().await {
            Ok(response) if response.status().is_success() => {
                capped(response).await.and_then(|body| {
                    serde_json::from_slice::<serde_json::Value>(&body).map_err(Into::into)
                })
            }
            Ok(response) => {
                failures.push(format!("{url}: HTTP {}", response.status()));
                continue;
            }
            Err(err) => {
                failures.push(format!("{url}: {err}"));
                continue;
            }
        };
        let document = document.with_context(|| format!("{url} is not JSON"))?;
        let named = document["issuer"].as_str().unwrap_or_default();
        if named != issuer {
            bail!("{url} names the issuer {named:?}, not {issuer:?}");
        }
        let jwks = document["jwks_uri"]
            .as_str()
            .with_context(|| format!("{url} has no jwks_uri"))?;
        let jwks = reqwest::Url::parse(jwks).with_context(|| format!("{url}: jwks_uri {jwks}"))?;
        check_scheme(&jwks).with_context(|| format!("{url}: jwks_uri {jwks}"))?;
        return Ok(jwks);
    }
    bail!("no metadata for {issuer}: {}", failures.join("; "))
}

/// The most of an issuer's document read: a JWKS is a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A response's body, refused past [`MAX_DOCUMENT_BYTES`].
async fn capped(mut response: reqwest::Response) -> Result<Vec<u8>> {
    let url = response.url().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("cannot read {url}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            bail!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `max-age` of a `Cache-Control` header (`no-store`/`no-cache`: none).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            age = seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        for ok in [
            "https://idp.example.com/realms/x",
            "http://127.0.0.1:8080",
            "http://[::1]/",
            "http://localhost:9000/a",
        ] {
            assert!(
                check_scheme(&reqwest::Url::parse(ok).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://idp.example.com",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                check_scheme(&reqwest::Url::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_oidc_say() {
        let urls = metadata_urls("https://idp.example.com/realms/zava").unwrap();
        assert_eq!(
            urls[0].as_str(),
            "https://idp.example.com/.well-known/oauth-authorization-server/realms/zava"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.example.com/realms/zava/.well-known/openid-configuration"
        );
        // an issuer that ends in `/`, as Auth0's do
        let urls = metadata_urls("https://zava.eu.auth0.com/").unwrap();
        assert_eq!(
            urls[0].as_str(),
            "https://zava.eu.auth0.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://zava.eu.auth0.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn cache_headers_decide_how_long_keys_are_fresh() {
        let headers = |value: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
            map
        };
        assert_eq!(
            max_age(&headers("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(&headers("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&headers("public")), None);
        assert_eq!(max_age(&reqwest::header::HeaderMap::new()), None);
    }
}
