//! The few HTTP responses the metrics endpoint sends, as bytes: every one closes the
//! connection, so each carries its length and `Connection: close`.

use std::fmt::Write;

/// The statuses the endpoint answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: the metrics, or the health check's "ok".
    Ok,
    /// 400: the request head is malformed.
    BadRequest,
    /// 401: `/metrics` needs credentials that were missing or wrong.
    Unauthorized,
    /// 404: no such path.
    NotFound,
    /// 405: a method other than GET.
    MethodNotAllowed,
    /// 408: the request head did not arrive in time.
    RequestTimeout,
    /// 431: the request head is too large.
    HeaderFieldsTooLarge,
}

impl Status {
    /// The status code.
    #[must_use]
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeaderFieldsTooLarge => 431,
        }
    }

    /// The reason phrase.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
        }
    }
}

/// `Content-Type` of the plain-text bodies other than the metrics.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A response before it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: Status,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// A `WWW-Authenticate` challenge (401 only).
    pub challenge: Option<&'static str>,
}

impl Response {
    /// A 200 with a body.
    #[must_use]
    pub fn ok(content_type: &'static str, body: String) -> Self {
        Response {
            status: Status::Ok,
            content_type,
            body,
            challenge: None,
        }
    }

    /// An error status whose body is its reason phrase.
    #[must_use]
    pub fn error(status: Status) -> Self {
        Response {
            status,
            content_type: TEXT_CONTENT_TYPE,
            body: format!("{}\n", status.reason()),
            challenge: None,
        }
    }

    /// A 401 with the challenge that says which credentials are wanted.
    #[must_use]
    pub fn unauthorized(challenge: Option<&'static str>) -> Self {
        Response {
            challenge,
            ..Response::error(Status::Unauthorized)
        }
    }

    /// The response as written on the wire (HTTP/1.1, closing the connection).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len()
        );
        if self.status == Status::MethodNotAllowed {
            head.push_str("Allow: GET\r\n");
        }
        if let Some(challenge) = self.challenge {
            let _ = write!(head, "WWW-Authenticate: {challenge}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_carries_its_length_and_closes() {
        let bytes = Response::ok(TEXT_CONTENT_TYPE, "ok\n".into()).to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nok\n"
        );
    }

    #[test]
    fn errors_add_allow_and_challenge_headers() {
        let not_allowed =
            String::from_utf8(Response::error(Status::MethodNotAllowed).to_bytes()).unwrap();
        assert!(not_allowed.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(not_allowed.contains("\r\nAllow: GET\r\n"));
        let refused =
            String::from_utf8(Response::unauthorized(Some("Bearer realm=\"x\"")).to_bytes())
                .unwrap();
        assert!(refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(refused.contains("\r\nWWW-Authenticate: Bearer realm=\"x\"\r\n"));
        assert!(refused.ends_with("\r\n\r\nUnauthorized\n"));
    }
}
