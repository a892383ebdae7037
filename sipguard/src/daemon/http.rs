//! A deliberately small HTTP/1.1 server (GET only, one request per connection) for `/metrics`,
//! `/api/top`, `/api/events` and `/healthz`: enough for Prometheus and the CLI, no framework.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::Shared;

const MAX_REQUEST: usize = 8192;

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(stream, shared).await {
                log::debug!("http: {error}");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) -> Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await??;
        if read == 0 || request.len() + read > MAX_REQUEST {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&request);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let number = |name: &str, default: u64| -> u64 {
        params
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let shared = shared.clone();
            let openmetrics = head.lines().any(|line| {
                line.to_ascii_lowercase().starts_with("accept:")
                    && line.contains("application/openmetrics-text")
            });
            if openmetrics {
                let text =
                    tokio::task::spawn_blocking(move || shared.exporter.render_openmetrics())
                        .await?;
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            } else {
                let text =
                    tokio::task::spawn_blocking(move || shared.exporter.render_text()).await?;
                ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
            }
        }
        ("GET", "/api/top") => {
            let view = shared.top_view(number("limit", 20) as usize);
            ("200 OK", "application/json", serde_json::to_string(&view)?)
        }
        ("GET", "/api/events") => {
            let after = number("after", 0);
            let limit = number("limit", 100).clamp(1, 4096) as usize;
            let wait = Duration::from_secs(number("wait", 0).min(60));
            let mut events = shared.events_after(after, limit);
            if events.is_empty() && !wait.is_zero() {
                // Long poll: wake on the next batch, or give up after `wait`.
                let _ = tokio::time::timeout(wait, shared.new_events.notified()).await;
                events = shared.events_after(after, limit);
            }
            (
                "200 OK",
                "application/json",
                serde_json::to_string(&events)?,
            )
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}
