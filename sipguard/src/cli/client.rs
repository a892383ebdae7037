//! Talking to a running `sipguard run` over loopback HTTP (blocking): GET a path, return the body.

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result, bail};

/// How long to wait for a daemon to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// GETs `path` from the daemon at `addr` within `timeout`: the body of a 200 answer, `Ok(None)`
/// when no daemon listens there (connection refused or not accepted in time), an error naming
/// the status for any other answer.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Option<String>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        // Statuses are ours to report; the daemon is always direct, never behind a proxy.
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let mut response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(ureq::Error::Io(error)) if error.kind() == ErrorKind::ConnectionRefused => {
            return Ok(None);
        }
        Err(ureq::Error::Timeout(ureq::Timeout::Connect)) => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("GET {url}")),
    };
    let status = response.status();
    if status != ureq::http::StatusCode::OK {
        bail!("GET {url}: {status}");
    }
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}: read the answer"))?;
    Ok(Some(body))
}

/// Like [`get`], for a binary answer (up to `limit` bytes).
pub fn get_bytes(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let mut response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(ureq::Error::Io(error)) if error.kind() == ErrorKind::ConnectionRefused => {
            return Ok(None);
        }
        Err(ureq::Error::Timeout(ureq::Timeout::Connect)) => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("GET {url}")),
    };
    let status = response.status();
    if status != ureq::http::StatusCode::OK {
        let detail = response.body_mut().read_to_string().unwrap_or_default();
        bail!("GET {url}: {status}: {}", detail.trim());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .with_context(|| format!("GET {url}: read the answer"))?;
    Ok(Some(body))
}
