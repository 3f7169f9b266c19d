//! Secrets from the command line or the environment (the JWT secret, the
//! application role's password, an embedding API key). Their `Debug` and
//! `Display` show no part of them, so a secret cannot reach a log by being
//! formatted; only [`Secret::expose`] hands the text over, where it is used.
//! Database URLs are parsed into `tokio_postgres::Config`, whose `Debug`
//! leaves the password out already.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_debug_nor_display_shows_the_secret() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(
            format!("{secret:?} {secret} {:?}", Some(&secret)),
            "Secret(***) *** Some(Secret(***))"
        );
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }
}
