//! The WebSocket opening handshake (RFC 6455 §4.1) as a client, free of I/O: the HTTP request
//! that asks to upgrade to WebSocket with subprotocol "mqtt" (MQTT 3.1.1 §6), and the check
//! of the broker's answer, so that a refusal is reported with its HTTP status.

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use thiserror::Error;

/// The WebSocket subprotocol MQTT uses.
pub const SUBPROTOCOL: &str = "mqtt";

/// Longest answer head (status line and headers) the generator reads.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// What a client asks for when it upgrades: the `Host` header and the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `Host` header value: the host as given (IPv6 in brackets) and the port.
    host: String,
    /// The HTTP path, starting with "/".
    path: String,
}

/// Why the broker's answer to the upgrade request does not open a WebSocket.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UpgradeError {
    /// The broker answered with another HTTP status than 101.
    #[error(
        "the broker refused the WebSocket upgrade: HTTP {status} {reason}{}",
        refusal_hint(*.status)
    )]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase the broker gave.
        reason: String,
    },
    /// The answer is not an HTTP response.
    #[error("the broker's answer to the WebSocket upgrade is not HTTP: {0:?}")]
    NotHttp(String),
    /// The answer's head does not end within [`MAX_RESPONSE_HEAD`] bytes.
    #[error(
        "the broker's answer to the WebSocket upgrade has no end within {MAX_RESPONSE_HEAD} bytes"
    )]
    TooLong,
    /// A 101 answer that breaks the handshake's rules.
    #[error("the broker's WebSocket upgrade answer is invalid: {0}")]
    Invalid(String),
}

/// What to check after a refusal, where the status suggests it.
fn refusal_hint(status: u16) -> &'static str {
    match status {
        404 => " (check --ws-path)",
        401 | 403 => " (the broker does not accept this client's request)",
        _ => "",
    }
}

impl UpgradeRequest {
    /// The request for `path` on `host`:`port`; `path` must start with "/" and hold no space
    /// or control character.
    pub fn new(host: &str, port: u16, path: &str) -> Result<UpgradeRequest, String> {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(format!(
                "--ws-path '{path}' must start with '/' and contain no spaces"
            ));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(UpgradeRequest {
            host,
            path: path.to_owned(),
        })
    }

    /// The path asked for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The HTTP request with `key` as its `Sec-WebSocket-Key`.
    pub fn encode(&self, key: &str) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n",
            self.path, self.host
        )
        .into_bytes()
    }
}

/// Checks the broker's answer read so far to a request sent with `key`: `Ok(None)` while its
/// head is incomplete, `Ok(Some(n))` when the first `n` bytes are a valid 101 answer (what
/// follows is already WebSocket frames).
pub fn check_response(received: &[u8], key: &str) -> Result<Option<usize>, UpgradeError> {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        if !received.is_empty() && !b"HTTP/".starts_with(&received[..received.len().min(5)]) {
            return Err(UpgradeError::NotHttp(first_line(received)));
        }
        if received.len() > MAX_RESPONSE_HEAD {
            return Err(UpgradeError::TooLong);
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&received[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(UpgradeError::NotHttp(first_line(received)));
    };
    let status: u16 = match code.parse() {
        Ok(status) if version.starts_with("HTTP/") => status,
        _ => return Err(UpgradeError::NotHttp(first_line(received))),
    };
    if status != 101 {
        return Err(UpgradeError::Refused {
            status,
            reason: parts.next().unwrap_or_default().trim().to_owned(),
        });
    }
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|&(_, value)| value)
    };
    let invalid = |what: &str| Err(UpgradeError::Invalid(what.to_owned()));
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return invalid("no 'Upgrade: websocket' header");
    }
    if !header("Connection").is_some_and(|v| {
        v.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return invalid("no 'Connection: Upgrade' header");
    }
    if header("Sec-WebSocket-Accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return invalid("its Sec-WebSocket-Accept does not match the request's key");
    }
    match header("Sec-WebSocket-Protocol") {
        None | Some(SUBPROTOCOL) => {}
        Some(other) => {
            return Err(UpgradeError::Invalid(format!(
                "it chose subprotocol '{other}', not '{SUBPROTOCOL}'"
            )))
        }
    }
    if header("Sec-WebSocket-Extensions").is_some_and(|v| !v.is_empty()) {
        return invalid("it chose an extension the client did not offer");
    }
    Ok(Some(end + 4))
}

/// The first line of `received`, shortened, for error messages.
fn first_line(received: &[u8]) -> String {
    let line = received.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(&line[..line.len().min(80)])
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3's example key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn answer(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn request_asks_for_mqtt_on_the_path() {
        let request = UpgradeRequest::new("broker.example", 8080, "/mqtt").unwrap();
        assert_eq!(
            String::from_utf8(request.encode(KEY)).unwrap(),
            "GET /mqtt HTTP/1.1\r\nHost: broker.example:8080\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        let v6 = UpgradeRequest::new("::1", 443, "/").unwrap();
        assert!(String::from_utf8(v6.encode(KEY))
            .unwrap()
            .contains("Host: [::1]:443\r\n"));
        assert!(UpgradeRequest::new("h", 1, "mqtt").is_err());
        assert!(UpgradeRequest::new("h", 1, "/a b").is_err());
    }

    #[test]
    fn a_valid_answer_is_accepted_and_frames_after_it_are_left() {
        // Mosquitto's answer, with the header names in its case.
        let mut received = answer("Sec-WebSocket-Protocol: mqtt\r\n").into_bytes();
        let head = received.len();
        received.extend_from_slice(&[0x82, 0x02, 0x20, 0x02]);
        assert_eq!(check_response(&received, KEY), Ok(Some(head)));
        assert_eq!(
            check_response(answer("").as_bytes(), KEY),
            Ok(Some(answer("").len()))
        );
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        let full = answer("");
        for cut in [0, 1, 5, 20, full.len() - 1] {
            assert_eq!(check_response(&full.as_bytes()[..cut], KEY), Ok(None));
        }
    }

    #[test]
    fn refusals_carry_the_http_status() {
        let refused = check_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", KEY)
            .unwrap_err();
        assert_eq!(
            refused,
            UpgradeError::Refused {
                status: 404,
                reason: "Not Found".into()
            }
        );
        assert_eq!(
            refused.to_string(),
            "the broker refused the WebSocket upgrade: HTTP 404 Not Found (check --ws-path)"
        );
        assert!(matches!(
            check_response(b"HTTP/1.0 403\r\n\r\n", KEY),
            Err(UpgradeError::Refused { status: 403, .. })
        ));
    }

    #[test]
    fn broken_answers_are_errors() {
        assert!(matches!(
            check_response(b"\x20\x02\x00\x00", KEY),
            Err(UpgradeError::NotHttp(_))
        ));
        assert!(matches!(
            check_response(b"SSH-2.0-x\r\n\r\n", KEY),
            Err(UpgradeError::NotHttp(_))
        ));
        assert_eq!(
            check_response(&vec![b'H'; MAX_RESPONSE_HEAD + 1], KEY),
            Err(UpgradeError::NotHttp("H".repeat(80)))
        );
        let endless = format!("HTTP/1.1 101 x\r\nX: {}", "y".repeat(MAX_RESPONSE_HEAD));
        assert_eq!(
            check_response(endless.as_bytes(), KEY),
            Err(UpgradeError::TooLong)
        );
        let wrong_key = answer("").replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(
            check_response(wrong_key.as_bytes(), KEY),
            Err(UpgradeError::Invalid(_))
        ));
        for extra in [
            "Sec-WebSocket-Protocol: mqttv3.1\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ] {
            assert!(matches!(
                check_response(answer(extra).as_bytes(), KEY),
                Err(UpgradeError::Invalid(_))
            ));
        }
        let no_upgrade = answer("").replace("Upgrade: WebSocket\r\n", "");
        assert!(matches!(
            check_response(no_upgrade.as_bytes(), KEY),
            Err(UpgradeError::Invalid(_))
        ));
    }
}
