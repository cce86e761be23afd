//! `sabot serve --metrics-listen ADDR`: the process's metrics ([`crate::metrics`]) over HTTP,
//! at `GET /metrics`, for Prometheus to scrape.
//!
//! The exposition is `prometheus-client`'s; the HTTP side is the least a scraper needs: one
//! request per connection, a request head of at most 8 KiB, `200` with the text for
//! `GET /metrics` (and `/`), `404` for other paths, `405` for other methods, and the
//! connection closed after the answer.

use std::net::SocketAddr;
use std::time::Duration;

use datafusion::common::{Result, exec_datafusion_err};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Binds `address` and serves the metrics until the process ends; returns the bound address.
pub async fn start(address: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| exec_datafusion_err!("cannot listen for metrics on {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| exec_datafusion_err!("cannot read the metrics address: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                // A client that stalls gets dropped; nothing else waits on it.
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream)).await;
            });
        }
    });
    Ok(bound)
}

async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics" | "/") => {
            let now_ms = chrono::Utc::now().timestamp_millis();
            match crate::metrics::global().encode(now_ms) {
                Ok(text) => {
                    respond(&mut stream, "200 OK", crate::metrics::CONTENT_TYPE, &text).await
                }
                Err(_) => respond(&mut stream, "500 Internal Server Error", "text/plain", "").await,
            }
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "see /metrics\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
