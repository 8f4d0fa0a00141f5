//! The metrics HTTP listener, on glommio's `TcpListener`: `GET /metrics` (the Prometheus text
//! a closure produces, behind optional credentials), `GET /healthz` (`ok`, never behind
//! credentials, for liveness probes), 404 for other paths and 405 for other methods.
//!
//! It is built to be harmless when exposed: a request head is read within a size limit and
//! a deadline, one response is sent per connection and the connection closed, and at most
//! `max_connections` connections are served at once (the others wait in the kernel's
//! backlog). It knows nothing of the broker: the caller passes the closure that renders the
//! text (typically `prometheus::render` of the aggregating core's [`super::MetricsAggregator`]).

mod auth;
mod request;
mod response;

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

pub use auth::HttpAuth;
pub use request::{parse_request_head, RequestError, RequestHead};
pub use response::{Response, Status, TEXT_CONTENT_TYPE};

use super::config::MetricsConfig;
use super::prometheus::PROMETHEUS_CONTENT_TYPE;

/// The path of the Prometheus text.
pub const METRICS_PATH: &str = "/metrics";
/// The path of the health check.
pub const HEALTH_PATH: &str = "/healthz";
/// Default largest request head read: 8 KiB, plenty for a scrape with credentials.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Default time a client has to send its request head.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a response write may wait for the client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the response, what the client still sends is read and discarded (so that closing
/// does not reset the connection before it read the response), up to this many bytes...
const DRAIN_LIMIT: usize = 64 * 1024;
/// ...or for this long.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// How often an idle accept loop checks whether to stop.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How the listener serves.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// The credentials `/metrics` asks for.
    pub auth: HttpAuth,
    /// Connections served at once (at least 1).
    pub max_connections: usize,
    /// Largest request head read; a larger one gets 431 and the connection is closed.
    pub max_request_bytes: usize,
    /// Time a client has to send its request head; a slower one gets 408.
    pub request_timeout: Duration,
}

impl HttpSettings {
    /// The settings of a configuration.
    #[must_use]
    pub fn from_config(config: &MetricsConfig) -> Self {
        HttpSettings {
            auth: config.http_auth(),
            max_connections: config.http_max_connections,
            ..HttpSettings::default()
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            auth: HttpAuth::None,
            max_connections: super::config::DEFAULT_HTTP_MAX_CONNECTIONS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address cannot be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The configured `http_listener`.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Binds the listener's address on the current glommio executor.
pub fn bind_http_listener(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr).map_err(|error| HttpError::Bind {
        addr,
        source: error.into(),
    })
}

/// The response to a request head: the routing, free of I/O.
pub fn respond(head: &RequestHead, auth: &HttpAuth, render: &dyn Fn() -> String) -> Response {
    let known = matches!(head.path.as_str(), METRICS_PATH | HEALTH_PATH);
    if !known {
        return Response::error(Status::NotFound);
    }
    if head.method != "GET" {
        return Response::error(Status::MethodNotAllowed);
    }
    if head.path == HEALTH_PATH {
        return Response::ok(TEXT_CONTENT_TYPE, "ok\n".to_owned());
    }
    if !auth.allows(head.authorization.as_deref()) {
        return Response::unauthorized(auth.challenge());
    }
    Response::ok(PROMETHEUS_CONTENT_TYPE, render())
}

/// Serves `listener` until `keep_running` says otherwise (checked every 100 ms while idle),
/// each connection in its own task on the current executor. Connections already accepted
/// finish on their own (their reads and writes are bounded in time).
pub async fn serve_http(
    listener: TcpListener,
    settings: HttpSettings,
    render: impl Fn() -> String + 'static,
    keep_running: impl Fn() -> bool,
) {
    let slots = Rc::new(Semaphore::new(settings.max_connections.max(1) as u64));
    let settings = Rc::new(settings);
    let render: Rc<dyn Fn() -> String> = Rc::new(render);
    loop {
        let permit = futures_lite::future::or(
            async { Some(slots.acquire_static_permit(1).await) },
            stop_requested(&keep_running),
        )
        .await;
        let Some(Ok(permit)) = permit else {
            return;
        };
        let accepted = futures_lite::future::or(
            async { Some(listener.accept().await) },
            stop_requested(&keep_running),
        )
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let settings = settings.clone();
                let render = render.clone();
                glommio::spawn_local(async move {
                    serve_connection(stream, &settings, &*render).await;
                    drop(permit);
                })
                .detach();
            }
            Some(Err(error)) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "metrics listener: accept failed");
                glommio::timer::sleep(STOP_POLL).await;
            }
        }
    }
}

/// Resolves to `None` once `keep_running` returns false.
async fn stop_requested<T>(keep_running: &impl Fn() -> bool) -> Option<T> {
    while keep_running() {
        glommio::timer::sleep(STOP_POLL).await;
    }
    None
}

/// Why no request head was read.
enum HeadError {
    /// The client closed (or failed) before sending a whole head: nothing to answer.
    Gone,
    /// The head cannot be served.
    Request(RequestError),
}

/// Reads one request, answers it, and closes.
async fn serve_connection(
    mut stream: TcpStream,
    settings: &HttpSettings,
    render: &dyn Fn() -> String,
) {
    // Only a zero duration is refused, and WRITE_TIMEOUT is not zero.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let outcome = futures_lite::future::or(
        async { Some(read_head(&mut stream, settings.max_request_bytes).await) },
        async {
            glommio::timer::sleep(settings.request_timeout).await;
            None
        },
    )
    .await;
    let response = match outcome {
        None => Response::error(Status::RequestTimeout),
        Some(Err(HeadError::Gone)) => return,
        Some(Err(HeadError::Request(RequestError::TooLarge))) => {
            Response::error(Status::HeaderFieldsTooLarge)
        }
        Some(Err(HeadError::Request(RequestError::Malformed))) => {
            Response::error(Status::BadRequest)
        }
        Some(Ok(head)) => respond(&head, &settings.auth, render),
    };
    if stream.write_all(&response.to_bytes()).await.is_err() {
        return;
    }
    if stream.flush().await.is_err() || stream.shutdown(Shutdown::Write).await.is_err() {
        return;
    }
    futures_lite::future::or(drain(&mut stream), async {
        glommio::timer::sleep(DRAIN_TIMEOUT).await;
    })
    .await;
}

/// Reads until a whole request head arrived, within `limit` bytes.
async fn read_head(stream: &mut TcpStream, limit: usize) -> Result<RequestHead, HeadError> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.map_err(|_| HeadError::Gone)?;
        if read == 0 {
            return Err(HeadError::Gone);
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(head) = parse_request_head(&buffer, limit).map_err(HeadError::Request)? {
            return Ok(head);
        }
    }
}

/// Reads and discards what the client still sends, until it closes or [`DRAIN_LIMIT`].
async fn drain(stream: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str, authorization: Option<&str>) -> RequestHead {
        RequestHead {
            method: method.to_owned(),
            path: path.to_owned(),
            authorization: authorization.map(str::to_owned),
        }
    }

    fn text() -> String {
        "m 1\n".to_owned()
    }

    #[test]
    fn routes_by_path_then_method() {
        let auth = HttpAuth::None;
        let metrics = respond(&head("GET", "/metrics", None), &auth, &text);
        assert_eq!(metrics.status, Status::Ok);
        assert_eq!(metrics.content_type, PROMETHEUS_CONTENT_TYPE);
        assert_eq!(metrics.body, "m 1\n");
        let health = respond(&head("GET", "/healthz", None), &auth, &text);
        assert_eq!((health.status, health.body.as_str()), (Status::Ok, "ok\n"));
        let missing = respond(&head("GET", "/other", None), &auth, &text);
        assert_eq!(missing.status, Status::NotFound);
        let missing_post = respond(&head("POST", "/other", None), &auth, &text);
        assert_eq!(missing_post.status, Status::NotFound);
        for method in ["POST", "HEAD", "PUT", "get"] {
            let refused = respond(&head(method, "/metrics", None), &auth, &text);
            assert_eq!(refused.status, Status::MethodNotAllowed, "{method}");
        }
    }

    #[test]
    fn credentials_guard_metrics_but_not_health() {
        let auth = HttpAuth::bearer("secret");
        let refused = respond(&head("GET", "/metrics", None), &auth, &text);
        assert_eq!(refused.status, Status::Unauthorized);
        assert_eq!(refused.challenge, auth.challenge());
        assert!(!refused.body.contains("m 1"));
        let wrong = respond(&head("GET", "/metrics", Some("Bearer nope")), &auth, &text);
        assert_eq!(wrong.status, Status::Unauthorized);
        let allowed = respond(
            &head("GET", "/metrics", Some("Bearer secret")),
            &auth,
            &text,
        );
        assert_eq!(allowed.status, Status::Ok);
        let health = respond(&head("GET", "/healthz", None), &auth, &text);
        assert_eq!(health.status, Status::Ok);
    }

    #[test]
    fn settings_follow_the_config() {
        let config = MetricsConfig {
            http_bearer_token: Some("tok".into()),
            http_max_connections: 2,
            ..MetricsConfig::default()
        };
        let settings = HttpSettings::from_config(&config);
        assert_eq!(settings.auth, HttpAuth::bearer("tok"));
        assert_eq!(settings.max_connections, 2);
        assert_eq!(settings.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    }
}
