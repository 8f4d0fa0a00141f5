//! Who may scrape `/metrics`: nobody needs credentials, or HTTP basic auth with one user
//! name and password, or one bearer token; compared in constant time.

use base64::Engine;
use subtle::ConstantTimeEq;

/// The credentials `/metrics` asks for.
#[derive(Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// Anyone may scrape.
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// `user:password`, as the decoded header must read.
        expected: Vec<u8>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Vec<u8>,
    },
}

impl HttpAuth {
    /// Basic auth with one user name and password.
    #[must_use]
    pub fn basic(username: &str, password: &str) -> Self {
        HttpAuth::Basic {
            expected: format!("{username}:{password}").into_bytes(),
        }
    }

    /// A bearer token.
    #[must_use]
    pub fn bearer(token: &str) -> Self {
        HttpAuth::Bearer {
            token: token.as_bytes().to_vec(),
        }
    }

    /// Whether a request with this `Authorization` header value may scrape. The secret is
    /// compared in constant time (only its length may show).
    #[must_use]
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let (expected_scheme, expected) = match self {
            HttpAuth::None => return true,
            HttpAuth::Basic { expected } => ("basic", expected),
            HttpAuth::Bearer { token } => ("bearer", token),
        };
        let Some((scheme, credentials)) = authorization.and_then(|value| value.split_once(' '))
        else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(expected_scheme) {
            return false;
        }
        let credentials = credentials.trim_start_matches(' ');
        let presented = match self {
            HttpAuth::Basic { .. } => {
                match base64::engine::general_purpose::STANDARD.decode(credentials) {
                    Ok(decoded) => decoded,
                    Err(_) => return false,
                }
            }
            _ => credentials.as_bytes().to_vec(),
        };
        bool::from(presented.ct_eq(expected))
    }

    /// The `WWW-Authenticate` value of a refusal, if credentials are needed.
    #[must_use]
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            HttpAuth::None => None,
            HttpAuth::Basic { .. } => Some("Basic realm=\"hydrant\", charset=\"UTF-8\""),
            HttpAuth::Bearer { .. } => Some("Bearer realm=\"hydrant\""),
        }
    }
}

impl std::fmt::Debug for HttpAuth {
    /// Names the kind of credentials, never the secret.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            HttpAuth::None => "None",
            HttpAuth::Basic { .. } => "Basic",
            HttpAuth::Bearer { .. } => "Bearer",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn no_auth_allows_everyone() {
        assert!(HttpAuth::None.allows(None));
        assert!(HttpAuth::None.allows(Some("Basic garbage")));
        assert_eq!(HttpAuth::None.challenge(), None);
    }

    #[test]
    fn basic_auth_needs_the_exact_credentials() {
        let auth = HttpAuth::basic("prom", "pa:ss");
        assert!(auth.allows(Some(&basic_header("prom:pa:ss"))));
        assert!(auth.allows(Some(&basic_header("prom:pa:ss").replace("Basic", "bAsIc"))));
        assert!(!auth.allows(Some(&basic_header("prom:pa:sS"))));
        assert!(!auth.allows(Some(&basic_header("prom:pa:ss "))));
        assert!(!auth.allows(Some(&basic_header("prom"))));
        assert!(!auth.allows(Some("Basic !!notbase64!!")));
        assert!(!auth.allows(Some("Bearer prom:pa:ss")));
        assert!(!auth.allows(Some("Basic")));
        assert!(!auth.allows(None));
        assert!(auth.challenge().unwrap().starts_with("Basic "));
    }

    #[test]
    fn bearer_auth_needs_the_token() {
        let auth = HttpAuth::bearer("t0ken");
        assert!(auth.allows(Some("Bearer t0ken")));
        assert!(auth.allows(Some("bearer t0ken")));
        assert!(!auth.allows(Some("Bearer t0ke")));
        assert!(!auth.allows(Some("Bearer t0kenn")));
        assert!(!auth.allows(Some(&basic_header("t0ken"))));
        assert!(!auth.allows(None));
        assert!(auth.challenge().unwrap().starts_with("Bearer "));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", HttpAuth::bearer("t0ken")), "Bearer");
        assert_eq!(format!("{:?}", HttpAuth::basic("u", "p")), "Basic");
    }
}
