//! The HTTP server of `--metrics-addr`: `/metrics` for Prometheus, `/healthz` for a liveness
//! probe. hyper's HTTP/1 server on a tokio runtime and thread of its own, away from the loop.
//!
//! Whoever reaches the port may open connections and send nothing. Each connection is a task,
//! not a thread, so holding many costs little; at most [`MAX_CONNECTIONS`] are kept, and a new
//! one beyond them closes the oldest one that is not being answered. A probe's connection is
//! answered as soon as its request is read, so idle connections, however many, cannot keep it
//! out (before, eight of them held every slot and the probe failed, restarting the monitor); a
//! request must arrive within [`REQUEST_TIME`], and bigger than [`MAX_REQUEST`] is refused.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::AbortHandle;

use super::{LIVENESS_PATIENCE, Metrics};

/// The most connections kept open at once (each holds a descriptor: the monitor reserves
/// these beside its watches').
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's head.
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// The largest request head read (hyper's least buffer).
const MAX_REQUEST: usize = 8192;

/// Serves `metrics` on `listener` from a thread of its own. The caller binds it at start-up,
/// so a busy port is an error then, not a silent absence, and before the monitor drops the
/// capabilities a privileged port needs.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("mm-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept(listener, metrics).await,
                    Err(error) => tracing::warn!("metrics: cannot serve: {error}"),
                }
            });
        })?;
    Ok(bound)
}

/// An open connection: its task, and whether it is being answered now.
struct Open {
    task: AbortHandle,
    answering: Arc<AtomicBool>,
}

/// Serves each connection as a task of its own, closing the oldest connection not being
/// answered to make room past [`MAX_CONNECTIONS`].
async fn accept(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let mut open: VecDeque<Open> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: let the connections in progress end first
                // rather than spin.
                tracing::debug!("metrics: cannot accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.retain(|connection| !connection.task.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            let idle = open
                .iter()
                .position(|c| !c.answering.load(Ordering::Acquire));
            match idle.and_then(|oldest| open.remove(oldest)) {
                Some(oldest) => oldest.task.abort(),
                // Every one is being answered: the newcomer waits for none of them.
                None => continue,
            }
        }
        let answering = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(connection(
            stream,
            Arc::clone(&metrics),
            Arc::clone(&answering),
        ));
        open.push_back(Open {
            task: task.abort_handle(),
            answering,
        });
    }
}

/// Answers the requests of one connection; `answering` is set while one is being answered.
async fn connection(
    stream: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    answering: Arc<AtomicBool>,
) {
    let service = hyper::service::service_fn(|request| {
        let metrics = Arc::clone(&metrics);
        let answering = Arc::clone(&answering);
        async move {
            answering.store(true, Ordering::Release);
            let response = answer(&request, &metrics).await;
            answering.store(false, Ordering::Release);
            Ok::<_, Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIME)
        .max_buf_size(MAX_REQUEST)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!("metrics request failed: {error}");
    }
}

/// `GET /metrics` (or `/`) with the text, `/healthz` with the loop's answer, anything else 404
/// or 405.
async fn answer(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    // Prometheus asks for OpenMetrics in its Accept header; anything else gets the older format.
    let open_metrics = request.headers().get_all(ACCEPT).iter().any(|value| {
        value
            .as_bytes()
            .windows(28)
            .any(|w| w.eq_ignore_ascii_case(b"application/openmetrics-text"))
    });
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let (status, body) = match (read, request.uri().path()) {
        (true, "/metrics" | "/") => (StatusCode::OK, metrics.encode(!open_metrics)),
        (true, "/healthz") => match metrics.liveness.check(LIVENESS_PATIENCE).await {
            true => (StatusCode::OK, "ok\n".to_string()),
            false => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the monitor's loop did not answer within {LIVENESS_PATIENCE:?}\n"),
            ),
        },
        (true, _) => (
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n".to_string(),
        ),
        (false, _) => (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_string()),
    };
    let content_type = match open_metrics {
        true => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        false => "text/plain; version=0.0.4; charset=utf-8",
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// The status line of what the server on `address` answers to `request`.
    fn answer_to(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        response.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn connections_beyond_the_most_close_the_oldest_idle_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = serve(listener, Metrics::new(None)).unwrap();
        let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        let close = "Connection: close\r\n\r\n";
        let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{close}");
        assert_eq!(answer_to(address, request.as_bytes()), "HTTP/1.1 200 OK");
        // The first held connection made room: it was closed, without an answer.
        held[0]
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut left = Vec::new();
        assert_eq!(held[0].read_to_end(&mut left).unwrap_or(0), 0);
        let other = format!("POST / HTTP/1.1\r\nHost: x\r\n{close}");
        assert_eq!(
            answer_to(address, other.as_bytes()),
            "HTTP/1.1 405 Method Not Allowed"
        );
        held.clear();
    }
}
