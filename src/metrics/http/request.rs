//! The head of an HTTP/1.x request, parsed from bytes without I/O: enough of it to route a
//! scrape (method, path, `Authorization`), and nothing a metrics endpoint does not need.

/// What the server needs of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The path of the request target, without its query.
    pub path: String,
    /// The value of the `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Why a request head cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is not HTTP/1.x as RFC 9112 writes it.
    #[error("malformed HTTP request")]
    Malformed,
    /// The head did not end within the size limit.
    #[error("HTTP request head too large")]
    TooLarge,
}

/// Parses the head at the start of `buffer`, looking no further than `limit` bytes:
/// `Ok(None)` while it is incomplete, an error when it is malformed or does not end within
/// `limit`.
pub fn parse_request_head(
    buffer: &[u8],
    limit: usize,
) -> Result<Option<RequestHead>, RequestError> {
    let window = &buffer[..buffer.len().min(limit)];
    let Some(end) = head_end(window) else {
        return if buffer.len() >= limit {
            Err(RequestError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&window[..end]).map_err(|_| RequestError::Malformed)?;
    let mut lines = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().ok_or(RequestError::Malformed)?;
    let (method, path) = parse_request_line(request_line)?;
    let mut authorization = None;
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(RequestError::Malformed)?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(RequestError::Malformed);
        }
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(RequestError::Malformed);
            }
            authorization = Some(value.trim_matches([' ', '\t']).to_owned());
        }
    }
    Ok(Some(RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization,
    }))
}

/// Where the blank line ending the head starts, if it is in `buffer` (a bare LF is accepted
/// for CRLF, as RFC 9112 allows).
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(2)
        .enumerate()
        .find_map(|(at, pair)| match pair {
            b"\n\n" => Some(at),
            b"\n\r" if buffer.get(at + 2) == Some(&b'\n') => Some(at),
            _ => None,
        })
}

/// `METHOD SP target SP HTTP/1.x`: the method and the target's path.
fn parse_request_line(line: &str) -> Result<(&str, &str), RequestError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestError::Malformed);
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(RequestError::Malformed);
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::Malformed);
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok((method, path))
}

/// Whether `byte` may appear in a method or header name (an RFC 9110 `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1024;

    #[test]
    fn a_scrape_parses() {
        let head = parse_request_head(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer abc \r\n\r\n",
            LIMIT,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/metrics");
        assert_eq!(head.authorization.as_deref(), Some("Bearer abc"));
    }

    #[test]
    fn bare_line_feeds_and_http_1_0_parse() {
        let head = parse_request_head(b"POST /healthz HTTP/1.0\nauthorization: x\n\n", LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/healthz");
        assert_eq!(head.authorization.as_deref(), Some("x"));
    }

    #[test]
    fn an_incomplete_head_waits() {
        assert_eq!(parse_request_head(b"", LIMIT), Ok(None));
        assert_eq!(
            parse_request_head(b"GET /metrics HTTP/1.1\r\n", LIMIT),
            Ok(None)
        );
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nA: b\r\n\r", LIMIT),
            Ok(None)
        );
    }

    #[test]
    fn a_head_beyond_the_limit_is_too_large() {
        let mut request = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        request.resize(LIMIT, b'a');
        assert_eq!(
            parse_request_head(&request, LIMIT),
            Err(RequestError::TooLarge)
        );
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request_head(&request, LIMIT),
            Err(RequestError::TooLarge)
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for request in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                parse_request_head(request, LIMIT),
                Err(RequestError::Malformed),
                "{:?}",
                String::from_utf8_lossy(request)
            );
        }
    }
}
