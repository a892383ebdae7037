//! What the HTTP server counts about itself, exported with the other metrics.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Connection counters of the HTTP server (shared handles: cloning shares the values).
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    /// Connections open now.
    pub(crate) open: Gauge,
    /// Idle connections closed to make room for a new one.
    pub(crate) evicted: Counter,
    /// New connections closed at once because every open one was busy in a handler.
    pub(crate) refused: Counter,
    /// Failed accepts (EMFILE and the like), each followed by a short pause.
    pub(crate) accept_errors: Counter,
}

impl HttpStats {
    /// Adds the counters to the registry behind `/metrics`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "sipguard_http_connections",
            format!(
                "Open connections to /metrics and the API (at most {}).",
                super::MAX_CONNECTIONS
            ),
            self.open.clone(),
        );
        registry.register(
            "sipguard_http_connections_evicted",
            "Idle connections closed to make room for a new one.",
            self.evicted.clone(),
        );
        registry.register(
            "sipguard_http_connections_refused",
            "New connections closed at once because every open one was busy.",
            self.refused.clone(),
        );
        registry.register(
            "sipguard_http_accept_errors",
            "Failed accepts (such as too many open files), retried after a short pause.",
            self.accept_errors.clone(),
        );
    }
}
