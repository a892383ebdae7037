//! The HTTP side of `sipguard run`: axum routes (`routes`) served by our own accept loop over
//! hyper, so that the server holds at most [`MAX_CONNECTIONS`] connections (idle ones make room
//! for new ones, see `slots`), bounds every request in time, and survives accept errors.

mod routes;
mod slots;
pub(crate) mod stats;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use hyper::{Request, body::Incoming};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, time::Instant};
use tower::ServiceExt;

use self::{
    slots::{Connections, Slot},
    stats::HttpStats,
};
use super::Shared;

/// Connections served at once. Prometheus needs one; `sipguard top`/`events` one each.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A handler must answer within this; it then gets 503.
pub const HANDLER_DEADLINE: Duration = Duration::from_secs(30);
/// Longest `/api/events` long poll (`wait=`), below [`HANDLER_DEADLINE`].
pub const MAX_EVENTS_WAIT: Duration = Duration::from_secs(25);
/// After this a connection is asked to close (keep-alive or slow readers cannot keep a slot).
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// A connection asked to close at the end of its lifetime gets this long to finish its answer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (EMFILE: the pending connection stays queued; retrying at once
/// would spin).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Request head and buffered output per connection.
const MAX_BUFFER: usize = 16 * 1024;

/// The address a request came from (the connection's peer), in the request's extensions:
/// some routes answer only to loopback, whatever address the listener is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer(pub SocketAddr);

impl Peer {
    /// From this host (IPv4-mapped loopback included).
    pub(crate) fn is_loopback(&self) -> bool {
        self.0.ip().to_canonical().is_loopback()
    }
}

/// Serves the API on `listener` until the daemon stops; never ends on a client's error.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stats: Arc<HttpStats>,
) -> Result<()> {
    let router = routes::router(shared);
    let connections = Connections::new(MAX_CONNECTIONS, stats.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUFFER);
    let mut failed_accepts = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                stats.accept_errors.inc();
                failed_accepts += 1;
                if failed_accepts == 1 {
                    log::warn!("http: accept: {error}; retrying every {ACCEPT_BACKOFF:?}");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if failed_accepts > 0 {
            log::warn!("http: accepting again after {failed_accepts} failed accepts");
            failed_accepts = 0;
        }
        let Some(slot) = connections.admit() else {
            stats.refused.inc();
            // Every open connection is inside a handler: closing this one is all we can do.
            drop(stream);
            continue;
        };
        let router = router.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let busy = slot.handle();
            // The slot counts as busy while a handler runs: only idle connections are evicted.
            let service = ServiceExt::<Request<Incoming>>::map_request(
                router,
                move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(Peer(peer));
                    request
                },
            )
            .map_future(move |response| {
                let guard = busy.busy();
                async move {
                    let response = response.await;
                    drop(guard);
                    response
                }
            });
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            serve_connection(connection, &slot).await;
        });
    }
}

/// Drives one connection until it ends, is evicted, or outlives [`MAX_CONNECTION_LIFETIME`].
async fn serve_connection<I, S>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    slot: &Slot,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    let deadline = tokio::time::sleep(MAX_CONNECTION_LIFETIME);
    let mut deadline = std::pin::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    log::debug!("http: connection: {error}");
                }
                return;
            }
            // Dropping the connection closes it (it was idle when chosen).
            () = slot.evicted() => return,
            () = deadline.as_mut() => {
                if closing {
                    return;
                }
                // Finish the answer in progress, if any, then close.
                connection.as_mut().graceful_shutdown();
                deadline.as_mut().reset(Instant::now() + SHUTDOWN_GRACE);
                closing = true;
            }
        }
    }
}
