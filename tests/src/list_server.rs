//! A small HTTP/1.1 server for provider-list tests: serves documents by path with an ETag (FNV
//! of the body), answers `If-None-Match` with 304, can be told to fail with any status, and
//! counts what it was asked, so a test can prove a conditional GET happened.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Result;

use crate::netns::NetNs;

/// What the server holds for one path.
#[derive(Clone, Debug)]
struct Document {
    body: String,
    /// Answered instead of the body when not 200.
    status: u16,
}

/// Requests seen, per path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Requests that carried If-None-Match.
    pub conditional: u64,
    /// 304 answers.
    pub not_modified: u64,
}

#[derive(Default)]
struct Shared {
    documents: HashMap<String, Document>,
    counts: HashMap<String, Counts>,
}

pub struct ListServer {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn etag(body: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

impl ListServer {
    /// Listens on `addr` inside `ns`.
    pub fn start(ns: &NetNs, addr: SocketAddr) -> Result<ListServer> {
        let listener = ns.run(move || TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &shared);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(ListServer {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Serves `body` at `path` from now on (with 200).
    pub fn set(&self, path: &str, body: &str) {
        self.lock().documents.insert(
            path.to_string(),
            Document {
                body: body.to_string(),
                status: 200,
            },
        );
    }

    /// Answers `path` with `status` (and no list) from now on; 200 serves the body again.
    pub fn set_status(&self, path: &str, status: u16) {
        if let Some(document) = self.lock().documents.get_mut(path) {
            document.status = status;
        }
    }

    pub fn counts(&self, path: &str) -> Counts {
        self.lock().counts.get(path).copied().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection (`Connection: close`).
fn serve(stream: TcpStream, shared: &Mutex<Shared>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(value.trim().to_string());
        }
    }
    let (status, headers, body) = {
        let mut shared = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let document = shared.documents.get(&path).cloned();
        let counts = shared.counts.entry(path).or_default();
        counts.requests += 1;
        counts.conditional += u64::from(if_none_match.is_some());
        match document {
            None => (404, String::new(), "not found\n".to_string()),
            Some(document) if document.status != 200 => {
                (document.status, String::new(), "failing\n".to_string())
            }
            Some(document) => {
                let tag = etag(&document.body);
                if if_none_match.as_deref() == Some(tag.as_str()) {
                    counts.not_modified += 1;
                    (304, format!("ETag: {tag}\r\n"), String::new())
                } else {
                    (200, format!("ETag: {tag}\r\n"), document.body)
                }
            }
        }
    };
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Error",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
