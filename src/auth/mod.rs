//! Who is calling, decided before any SQL runs.
//!
//! - `header`: the trusted `x-rls-user-id` header, the original sample's way.
//!   Anyone who can reach the server can claim any identity, so this mode is
//!   only for trusted networks. The database maps the id to stores.
//! - `jwt`: an `Authorization: Bearer` token whose signature, `exp`, `nbf`,
//!   `iss` and `aud` are verified with a pinned algorithm; who the caller is,
//!   what they may see and which tools they may use come from its claims
//!   ([`ClaimNames`]). The keys come from a secret, a PEM file, a JWKS
//!   file, or OAuth authorization servers ([`Issuers`]); with the latter the
//!   server is an OAuth 2.1 protected resource and publishes its metadata
//!   (RFC 9728).
//! - stdio: a fixed identity from the configuration.
//!
//! Scopes decide which tools a caller may use ([`ToolScopes`]); a caller
//! whose credential names none gets the operator's default scopes.
//!
//! A request without an identity gets none — never head office — unless the
//! operator configured a default identity explicitly.

mod claims;
mod issuers;
pub mod revocation;
pub mod scopes;
mod settings;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::caller::{Caller, CallerId, Principal, Scopes};
pub use claims::ClaimNames;
pub use issuers::Issuers;
pub use revocation::Revoked;
pub use scopes::ToolScopes;
pub use settings::AccessSettings;

pub const IDENTITY_HEADER: &str = "x-rls-user-id";

/// How HTTP callers prove who they are.
pub enum Authenticator {
    /// Callers named by the header get these scopes.
    Header(Scopes),
    Jwt(Box<JwtVerifier>),
}

/// Why a request's identity was refused. HTTP answers 400 for a malformed
/// or repeated header and 401 for the rest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token (Authorization: Bearer <jwt>)")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the {header} header is not a UUID")]
    MalformedHeader { header: &'static str },
    /// Two values of a header that names the caller: a client could put
    /// its own before the one a trusted proxy appends.
    #[error("more than one {header} header: send exactly one")]
    RepeatedHeader { header: &'static str },
}

/// Headers that name the caller, in any mode: each may appear once at most.
const SINGLE_HEADERS: [&str; 2] = [IDENTITY_HEADER, "Authorization"];

impl Authenticator {
    /// The verifier of JWT mode.
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        match self {
            Authenticator::Jwt(verifier) => Some(verifier),
            Authenticator::Header(_) => None,
        }
    }

    /// The caller named by a request's headers; `Ok(None)` when the request
    /// names nobody (header mode without the header).
    /// A request that repeats `x-rls-user-id` or `Authorization` is refused
    /// in every mode, whichever header the mode reads.
    pub async fn identify(&self, headers: &http::HeaderMap) -> Result<Option<Caller>, AuthError> {
        if let Some(header) = SINGLE_HEADERS
            .into_iter()
            .find(|name| headers.get_all(*name).iter().nth(1).is_some())
        {
            return Err(AuthError::RepeatedHeader { header });
        }
        match self {
            Authenticator::Header(scopes) => match headers.get(IDENTITY_HEADER) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .ok()
                    .and_then(|v| CallerId::parse(v).ok())
                    .map(|id| Some(Caller::by_id(id, Principal::Header, scopes.clone())))
                    .ok_or(AuthError::MalformedHeader {
                        header: IDENTITY_HEADER,
                    }),
            },
            Authenticator::Jwt(verifier) => {
                let token = bearer_token(headers).ok_or(AuthError::MissingToken)?;
                verifier.verify(token).await.map(Some)
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// This server's URL as an OAuth protected resource (the audience), and
/// where its metadata is: RFC 9728's well-known path in front of the
/// resource's own path.
struct Resource {
    url: String,
    metadata_url: String,
}

impl Resource {
    fn new(url: &str) -> Result<Resource> {
        let resource =
            reqwest::Url::parse(url).with_context(|| format!("the resource URL {url}"))?;
        let mut metadata = resource.clone();
        metadata.set_path(&format!(
            "/.well-known/oauth-protected-resource{}",
            resource.path().trim_end_matches('/')
        ));
        metadata.set_query(None);
        Ok(Resource {
            url: url.to_owned(),
            metadata_url: metadata.to_string(),
        })
    }
}

/// Verifies bearer tokens with one pinned algorithm per key.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    claims: ClaimNames,
    /// The scopes of a token that names none.
    default_scopes: Scopes,
    /// Every scope a tool needs, published as `scopes_supported`.
    scopes_supported: Vec<String>,
    /// This server as an OAuth protected resource, with keys from issuers.
    resource: Option<Resource>,
    /// Tokens refused by their `jti` however valid otherwise.
    revoked: Option<Revoked>,
}

enum Keys {
    One(DecodingKey, Algorithm),
    /// From a JWKS file, by key id.
    Set(issuers::KeySet),
    /// From OAuth authorization servers, by issuer and key id.
    Remote(Issuers),
}

/// Where the verification key comes from.
pub enum JwtKey<'a> {
    /// HS256 with a shared secret.
    Secret(&'a str),
    /// RS256 or ES256 with a PEM public key.
    PublicKey {
        pem_file: &'a Path,
        algorithm: Algorithm,
    },
    /// RS256 or ES256 keys of a JWKS document, chosen by the token's `kid`.
    JwksFile(&'a Path),
    /// The keys of OAuth authorization servers (`--oauth-issuer`), found
    /// through their metadata; a token's `iss` must be one of them.
    Issuers {
        urls: &'a [String],
        /// Unknown `kid`s make an issuer be asked again at most this often.
        refetch_every: Duration,
    },
}

pub struct JwtSettings<'a> {
    pub key: JwtKey<'a>,
    /// The required `iss`; with [`JwtKey::Issuers`], any of theirs.
    pub issuer: &'a str,
    /// The required `aud`: with [`JwtKey::Issuers`], this server's URL as
    /// a protected resource (RFC 8707), published in its metadata.
    pub audience: &'a str,
    /// Where the claims say who the caller is and what they may see.
    pub claims: ClaimNames,
    /// The scopes of a token that names none.
    pub default_scopes: Scopes,
    /// Every scope a tool needs, published in the protected resource's
    /// metadata and asked for in a 401.
    pub scopes_supported: Vec<String>,
    /// A file of revoked `jti`s, read again when it changes.
    pub revoked: Option<&'a Path>,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings<'_>) -> Result<JwtVerifier> {
        let keys = match settings.key {
            JwtKey::Secret(secret) => {
                if secret.len() < 32 {
                    bail!("the JWT secret must be at least 32 bytes long");
                }
                Keys::One(
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            JwtKey::PublicKey {
                pem_file,
                algorithm,
            } => {
                let pem = std::fs::read(pem_file).with_context(|| {
                    format!("cannot read the JWT public key {}", pem_file.display())
                })?;
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    other => bail!("unsupported JWT algorithm {other:?}; use RS256 or ES256"),
                }
                .with_context(|| {
                    format!(
                        "{} is not a {algorithm:?} public key in PEM",
                        pem_file.display()
                    )
                })?;
                Keys::One(key, algorithm)
            }
            JwtKey::JwksFile(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the JWKS file {}", path.display()))?;
                let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JWKS document", path.display()))?;
                let keys = usable_keys(&set, &path.display().to_string(), true)?;
                if keys.is_empty() {
                    bail!("{} holds no keys", path.display());
                }
                Keys::Set(keys)
            }
            JwtKey::Issuers {
                urls,
                refetch_every,
            } => Keys::Remote(Issuers::new(urls, refetch_every)?),
        };
        let resource = match keys {
            Keys::Remote(_) => Some(Resource::new(settings.audience)?),
            _ => None,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[settings.issuer]);
        validation.set_audience(&[settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(JwtVerifier {
            keys,
            validation,
            claims: settings.claims,
            default_scopes: settings.default_scopes,
            scopes_supported: settings.scopes_supported,
            resource,
            revoked: settings.revoked.map(Revoked::load).transpose()?,
        })
    }

    /// Fetches the issuers' keys ahead of the first token; start-up does
    /// not wait for it.
    pub async fn warm_up(&self) {
        if let Keys::Remote(issuers) = &self.keys {
            issuers.warm_up().await;
        }
    }

    /// This server's metadata as an OAuth protected resource (RFC 9728),
    /// when its keys come from authorization servers.
    pub fn protected_resource(&self) -> Option<serde_json::Value> {
        let (Keys::Remote(issuers), Some(resource)) = (&self.keys, &self.resource) else {
            return None;
        };
        Some(serde_json::json!({
            "resource": resource.url,
            "authorization_servers": issuers.urls(),
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "sqlmcp",
        }))
    }

    /// The URL of [`Self::protected_resource`], made once.
    pub fn protected_resource_url(&self) -> Option<&str> {
        self.resource.as_ref().map(|r| r.metadata_url.as_str())
    }

    /// Every scope some tool needs, space-separated: what a 401 asks for.
    pub fn scope_challenge(&self) -> String {
        self.scopes_supported.join(" ")
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let invalid = |reason: &str| AuthError::InvalidToken(reason.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid("malformed, or signed with an algorithm sqlmcp never accepts (such as none)")
        })?;
        let kid = || {
            header
                .kid
                .as_deref()
                .ok_or_else(|| invalid("no `kid` in the token header"))
        };
        let mut validation = self.validation.clone();
        let (key, algorithm) = match &self.keys {
            Keys::One(key, algorithm) => (key.clone(), *algorithm),
            Keys::Set(keys) => keys
                .get(kid()?)
                .cloned()
                .ok_or_else(|| invalid("unknown `kid`"))?,
            Keys::Remote(issuers) => {
                // the issuer says where to find the key; the signature, checked
                // next, says whether the issuer is telling the truth
                let claims: serde_json::Map<String, serde_json::Value> =
                    jsonwebtoken::dangerous::insecure_decode_claims(token)
                        .map_err(|_| invalid("malformed claims"))?;
                let iss = claims
                    .get("iss")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| invalid("a required claim (exp, iss, aud) is missing"))?;
                let key = issuers.key(iss, kid()?).await?;
                validation.set_issuer(&[iss]);
                key
            }
        };
        // The algorithm is the key's, never the token's: this refuses `none`
        // and HS256 tokens signed with a public key.
        if header.alg != algorithm {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not the expected {algorithm:?}",
                header.alg
            )));
        }
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind::*;
            invalid(match err.kind() {
                ExpiredSignature => "expired",
                ImmatureSignature => "not valid yet (nbf)",
                InvalidIssuer => "wrong issuer",
                InvalidAudience => "wrong audience",
                InvalidSignature => "bad signature",
                MissingRequiredClaim(_) => "a required claim (exp, iss, aud) is missing",
                _ => "cannot be verified",
            })
        })?;
        if let (Some(revoked), Some(jti)) = (
            &self.revoked,
            data.claims.get("jti").and_then(|v| v.as_str()),
        ) && revoked.contains(jti)
        {
            return Err(invalid("revoked"));
        }
        self.claims.caller(&data.claims, &self.default_scopes)
    }
}

/// The RS256 and ES256 keys of a JWKS document, by `kid`. `strict` (a
/// file the operator wrote) refuses a key without a `kid` or of another
/// kind; otherwise (an issuer's document, which may hold keys for other
/// uses) such keys are left out.
fn usable_keys(
    set: &jsonwebtoken::jwk::JwkSet,
    source: &str,
    strict: bool,
) -> Result<issuers::KeySet> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let usable = || -> Result<(String, (DecodingKey, Algorithm))> {
            let Some(kid) = jwk.common.key_id.clone() else {
                bail!("{source}: every key needs a `kid`");
            };
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => bail!("{source}: key {kid} is neither RSA nor EC"),
            };
            let key = DecodingKey::from_jwk(jwk)
                .with_context(|| format!("{source}: key {kid} is unusable"))?;
            Ok((kid, (key, algorithm)))
        };
        match usable() {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(err) if strict => return Err(err),
            Err(err) => tracing::debug!(error = %err, "left out a key"),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::caller::Grant;

    const SECRET: &str = "a test secret that is long enough for HS256";
    const HEAD_OFFICE: &str = "00000000-0000-0000-0000-000000000000";
    const SEATTLE: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
    const ONLINE: &str = "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2";

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
    }

    /// A verifier of tokens from `iss` for `aud`, with the default claims.
    fn verifier(key: JwtKey<'_>) -> JwtVerifier {
        JwtVerifier::new(JwtSettings {
            key,
            issuer: "iss",
            audience: "aud",
            claims: ClaimNames::default(),
            default_scopes: Scopes::default(),
            scopes_supported: Vec::new(),
            revoked: None,
        })
        .unwrap()
    }

    fn token(claims: Value, algorithm: Algorithm, key: &jsonwebtoken::EncodingKey) -> String {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, key).unwrap()
    }

    fn claims(subject: &str, audience: &str, issuer: &str, expires_in: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"sub": subject, "aud": audience, "iss": issuer, "exp": now + expires_in, "nbf": now - 10})
    }

    /// With an RS256 or ES256 public key, a token must use that algorithm: an
    /// HS256 token "signed" with the public key as a secret is refused.
    #[tokio::test]
    async fn public_key_verifiers_pin_the_algorithm() {
        let fixtures = fixtures();
        for (algorithm, public, private) in [
            (Algorithm::RS256, "rsa-public.pem", "rsa-private.pem"),
            (Algorithm::ES256, "ec-public.pem", "ec-private.pem"),
        ] {
            let verifier = verifier(JwtKey::PublicKey {
                pem_file: &fixtures.join(public),
                algorithm,
            });
            let pem = std::fs::read(fixtures.join(private)).unwrap();
            let signing = match algorithm {
                Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
                _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
            };
            let good = token(claims(SEATTLE, "aud", "iss", 300), algorithm, &signing);
            assert_eq!(
                verifier.verify(&good).await.unwrap().grant,
                Grant::Mapped(CallerId::for_tests(SEATTLE))
            );
            let public_pem = std::fs::read(fixtures.join(public)).unwrap();
            let confused = token(
                claims(HEAD_OFFICE, "aud", "iss", 300),
                Algorithm::HS256,
                &jsonwebtoken::EncodingKey::from_secret(&public_pem),
            );
            let err = verifier.verify(&confused).await.unwrap_err().to_string();
            assert!(err.contains("algorithm HS256 is not the expected"), "{err}");
        }
    }

    #[tokio::test]
    async fn jwks_keys_are_chosen_by_kid() {
        let fixtures = fixtures();
        let verifier = verifier(JwtKey::JwksFile(&fixtures.join("jwks.json")));
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(fixtures.join("rsa-private.pem")).unwrap(),
        )
        .unwrap();
        let with_kid = |kid: Option<&str>| {
            let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, &claims(ONLINE, "aud", "iss", 300), &signing).unwrap()
        };
        assert_eq!(
            verifier
                .verify(&with_kid(Some("test-rsa")))
                .await
                .unwrap()
                .grant,
            Grant::Mapped(CallerId::for_tests(ONLINE))
        );
        assert!(
            verifier
                .verify(&with_kid(Some("rotated-away")))
                .await
                .unwrap_err()
                .to_string()
                .contains("unknown `kid`")
        );
        assert!(
            verifier
                .verify(&with_kid(None))
                .await
                .unwrap_err()
                .to_string()
                .contains("no `kid`")
        );
    }

    #[tokio::test]
    async fn tokens_not_valid_yet_are_refused() {
        let verifier = verifier(JwtKey::Secret(SECRET));
        let mut early = claims(SEATTLE, "aud", "iss", 7_200);
        early["nbf"] = json!(chrono::Utc::now().timestamp() + 3_600);
        let token = token(
            early,
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert!(
            verifier
                .verify(&token)
                .await
                .unwrap_err()
                .to_string()
                .contains("not valid yet")
        );
    }
}
