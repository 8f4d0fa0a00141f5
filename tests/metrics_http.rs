//! The metrics HTTP listener on a real loopback socket, served by a glommio executor thread
//! and spoken to with a plain `std::net::TcpStream`: `/metrics`, `/healthz`, 404, 405, basic
//! and bearer auth, malformed, oversized and slow requests, and the connection bound.
//!
//! `exposition_of_an_aggregator_is_served` also writes the body it scraped to the file named
//! by `HYDRANT_METRICS_EXPOSITION_OUT`, when set: tests/python/test_metrics.py runs it that
//! way and parses the text with the Prometheus client library's own parser.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use glommio::{LocalExecutorBuilder, Placement};
use hydrant::metrics::{
    bind_http_listener, prometheus, serve_http, Counter, DropReason, Gauge, HttpAuth, HttpSettings,
    Latency, MetricsAggregator, MetricsSnapshot, ProcessMemory, SlowClient,
};

/// The text the fixed producer serves.
const FIXED_TEXT: &str = "# HELP up Whether it is up.\n# TYPE up gauge\nup 1\n";

/// How long a client waits for a whole response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Python test wants the scraped exposition.
const EXPOSITION_OUT_VAR: &str = "HYDRANT_METRICS_EXPOSITION_OUT";

/// A metrics listener on an ephemeral loopback port, stopped and joined when dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `FIXED_TEXT`.
    fn fixed(settings: HttpSettings) -> Server {
        Server::start(settings, || Box::new(|| FIXED_TEXT.to_owned()))
    }

    /// Serves what the producer made by `make_render` (on the executor thread) returns.
    fn start(
        settings: HttpSettings,
        make_render: impl FnOnce() -> Box<dyn Fn() -> String> + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let (addr_tx, addr_rx) = mpsc::channel();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .name("metrics-http-test")
            .spawn(move || async move {
                let listener = bind_http_listener("127.0.0.1:0".parse().unwrap())
                    .expect("bind an ephemeral loopback port");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let render = make_render();
                serve_http(listener, settings, render, move || {
                    !stop_flag.load(Ordering::Relaxed)
                })
                .await;
            })
            .expect("start an executor");
        let addr = addr_rx
            .recv_timeout(CLIENT_TIMEOUT)
            .expect("the listener reports its address");
        let thread = std::thread::spawn(move || {
            handle.join().expect("the executor thread ends cleanly");
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the listener");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream
    }

    /// Sends `request` as it is and reads the response until the server closes.
    fn exchange(&self, request: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(request).unwrap();
        read_response(&mut stream)
    }

    /// A GET of `path` with optional `Authorization`.
    fn get(&self, path: &str, authorization: Option<&str>) -> Response {
        let auth_line = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth_line}\r\n");
        self.exchange(request.as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("the server thread stops");
            }
        }
    }
}

/// A parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Reads until the server closes the connection (a timeout fails the test: the server must
/// close after one response).
fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("the server answers and closes the connection");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("a header line");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let response = Response {
        status,
        headers,
        body: body.to_owned(),
    };
    let length: usize = response
        .header("Content-Length")
        .and_then(|value| value.parse().ok())
        .expect("a Content-Length");
    assert_eq!(
        length,
        response.body.len(),
        "Content-Length matches the body"
    );
    assert_eq!(response.header("Connection"), Some("close"));
    response
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[test]
fn metrics_are_served_as_prometheus_text() {
    let server = Server::fixed(HttpSettings::default());
    let response = server.get("/metrics", None);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(response.body, FIXED_TEXT);
    let with_query = server.get("/metrics?name[]=up", None);
    assert_eq!(with_query.status, 200);
}

#[test]
fn healthz_says_ok() {
    let server = Server::fixed(HttpSettings::default());
    let response = server.get("/healthz", None);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok\n");
}

#[test]
fn other_paths_are_not_found() {
    let server = Server::fixed(HttpSettings::default());
    for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
        assert_eq!(server.get(path, None).status, 404, "{path}");
    }
}

#[test]
fn other_methods_are_not_allowed() {
    let server = Server::fixed(HttpSettings::default());
    let post =
        server.exchange(b"POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET"));
    assert!(!post.body.contains("up 1"));
    let head = server.exchange(b"HEAD /healthz HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(head.status, 405);
    let delete = server.exchange(b"DELETE /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(delete.status, 405);
}

#[test]
fn basic_auth_refuses_then_accepts() {
    let settings = HttpSettings {
        auth: HttpAuth::basic("prometheus", "s3cret"),
        ..HttpSettings::default()
    };
    let server = Server::fixed(settings);
    let missing = server.get("/metrics", None);
    assert_eq!(missing.status, 401);
    assert!(missing
        .header("WWW-Authenticate")
        .is_some_and(|challenge| challenge.starts_with("Basic ")));
    assert!(!missing.body.contains("up 1"));
    let wrong = server.get("/metrics", Some(&basic("prometheus:guess")));
    assert_eq!(wrong.status, 401);
    let bearer = server.get("/metrics", Some("Bearer s3cret"));
    assert_eq!(bearer.status, 401);
    let right = server.get("/metrics", Some(&basic("prometheus:s3cret")));
    assert_eq!(right.status, 200);
    assert_eq!(right.body, FIXED_TEXT);
    let health = server.get("/healthz", None);
    assert_eq!(health.status, 200, "liveness probes need no credentials");
}

#[test]
fn bearer_token_refuses_then_accepts() {
    let settings = HttpSettings {
        auth: HttpAuth::bearer("scrape-token-123"),
        ..HttpSettings::default()
    };
    let server = Server::fixed(settings);
    assert_eq!(server.get("/metrics", None).status, 401);
    assert_eq!(
        server
            .get("/metrics", Some("Bearer scrape-token-12"))
            .status,
        401
    );
    assert_eq!(
        server
            .get("/metrics", Some(&basic("scrape-token-123")))
            .status,
        401
    );
    let right = server.get("/metrics", Some("Bearer scrape-token-123"));
    assert_eq!(right.status, 200);
    assert_eq!(right.body, FIXED_TEXT);
}

#[test]
fn an_oversized_request_is_refused_and_closed() {
    let server = Server::fixed(HttpSettings {
        max_request_bytes: 1024,
        ..HttpSettings::default()
    });
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    request.resize(16 * 1024, b'a');
    let mut stream = server.connect();
    stream.write_all(&request).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 431);
    assert!(!response.body.contains("up 1"));

    let mut long_header = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    long_header.resize(2000, b'a');
    long_header.extend_from_slice(b"\r\n\r\n");
    assert_eq!(server.exchange(&long_header).status, 431);
    assert_eq!(server.get("/healthz", None).status, 200, "still serving");
}

#[test]
fn a_malformed_request_is_refused() {
    let server = Server::fixed(HttpSettings::default());
    assert_eq!(server.exchange(b"GET /metrics\r\n\r\n").status, 400);
    assert_eq!(server.exchange(b"hello\r\n\r\n").status, 400);
    assert_eq!(
        server
            .exchange(b"GET /metrics HTTP/1.1\r\nbroken header\r\n\r\n")
            .status,
        400
    );
}

#[test]
fn a_slow_request_times_out() {
    let server = Server::fixed(HttpSettings {
        request_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    });
    let mut stream = server.connect();
    let started = Instant::now();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(250));

    let mut silent = server.connect();
    silent.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    silent
        .read_to_end(&mut rest)
        .expect("a client that sends nothing is closed");
    assert!(rest.is_empty(), "nothing to answer");
}

#[test]
fn connections_beyond_the_bound_wait_their_turn() {
    let server = Server::fixed(HttpSettings {
        max_connections: 1,
        request_timeout: Duration::from_millis(600),
        ..HttpSettings::default()
    });
    // An idle client holds the only slot until its request times out.
    let mut idle = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let response = server.get("/healthz", None);
    let waited = started.elapsed();
    assert_eq!(response.status, 200);
    assert!(
        waited >= Duration::from_millis(350),
        "served after the idle connection's slot freed: {waited:?}"
    );
    assert_eq!(read_response(&mut idle).status, 408);
}

#[test]
fn every_scrape_asks_the_producer_again() {
    let server = Server::start(HttpSettings::default(), || {
        let scrapes = Rc::new(RefCell::new(0u64));
        Box::new(move || {
            *scrapes.borrow_mut() += 1;
            format!("scrapes_total {}\n", scrapes.borrow())
        })
    });
    assert_eq!(server.get("/metrics", None).body, "scrapes_total 1\n");
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/metrics", None).body, "scrapes_total 2\n");
}

/// An aggregator fed two cores' snapshots, one round completed.
fn sample_aggregator() -> MetricsAggregator {
    let start = Instant::now();
    let mut aggregator = MetricsAggregator::new(2, 3, start);
    for core in 0..2usize {
        let mut snapshot = MetricsSnapshot::empty(core, 3);
        let scale = core as u64 + 1;
        snapshot.counters[Counter::PublishReceived.index()] = 100 * scale;
        snapshot.counters[Counter::PublishSent.index()] = 250 * scale;
        snapshot.counters[Counter::BytesReceived.index()] = 4096 * scale;
        snapshot.gauges[Gauge::ClientsConnected.index()] = 3 * scale;
        snapshot.gauges[Gauge::RetainedMessages.index()] = 12;
        snapshot.drops[DropReason::ConnectionQueueFull.index()] = 5 * scale;
        for micros in [3, 40, 900, 20_000] {
            snapshot
                .latencies
                .get_mut(Latency::PublishDelivery)
                .record(Duration::from_micros(micros * scale));
        }
        snapshot
            .latencies
            .get_mut(Latency::EventLoopLag)
            .record(Duration::from_micros(150));
        snapshot.slow_clients.offer(SlowClient {
            client_id: Arc::from(format!("sensor \"{core}\"\\east\nline")),
            core,
            queued_messages: 40 * scale,
            queued_bytes: 4000 * scale,
            oldest_queued: Duration::from_millis(700 * scale),
            dropped: scale,
        });
        aggregator.accept(snapshot);
    }
    let memory = ProcessMemory {
        resident_bytes: Some(8 << 20),
        heap_bytes: Some(3 << 20),
    };
    aggregator.complete_round(start + Duration::from_secs(30), memory);
    aggregator
}

#[test]
fn exposition_of_an_aggregator_is_served() {
    let server = Server::start(HttpSettings::default(), || {
        let aggregator = Rc::new(sample_aggregator());
        Box::new(move || prometheus::render(&aggregator))
    });
    let response = server.get("/metrics", None);
    assert_eq!(response.status, 200);
    let body = response.body;
    assert_eq!(body, prometheus::render(&sample_aggregator()));
    for line in [
        "hydrant_publish_messages_received_total{core=\"0\"} 100",
        "hydrant_publish_messages_received_total{core=\"1\"} 200",
        "hydrant_publish_messages_dropped_total{core=\"1\",reason=\"connection_queue_full\"} 10",
        "hydrant_retained_messages 12",
        "hydrant_clients_maximum 9",
        "hydrant_publish_delivery_latency_seconds_count{core=\"1\"} 4",
        "hydrant_publish_delivery_latency_seconds_bucket{core=\"0\",le=\"+Inf\"} 4",
        "hydrant_slow_client_queued_messages{client_id=\"sensor \\\"1\\\"\\\\east\\nline\",core=\"1\"} 80",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?}");
    }
    if let Some(path) = std::env::var_os(EXPOSITION_OUT_VAR) {
        std::fs::write(&path, &body).expect("write the exposition for the Python test");
    }
}
