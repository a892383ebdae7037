//! The routes: `/metrics`, `/api/top`, `/api/events` (long poll), `/healthz`, and
//! `POST /api/strike` (from loopback only). Unknown paths answer 404, other methods than a
//! route's 405.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tower_http::timeout::TimeoutLayer;

use super::{HANDLER_DEADLINE, MAX_EVENTS_WAIT, Peer};
use crate::{
    daemon::{Shared, metrics::MetricsFormat},
    live::{LiveError, MAX_STRIKES},
    state::{LiveState, Target},
    time::boot_now_ns,
};

/// The API of `sipguard run`, with the per-request deadline.
pub(in crate::daemon) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/top", get(top))
        .route("/api/events", get(events))
        .route("/healthz", get(healthz))
        .route("/api/strike", post(strike))
        .route("/api/capture/ring", get(capture_ring))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HANDLER_DEADLINE,
        ))
        .with_state(shared)
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text otherwise.
fn wanted_format(headers: &HeaderMap) -> MetricsFormat {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    if openmetrics {
        MetricsFormat::OpenMetrics
    } else {
        MetricsFormat::Text
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let format = wanted_format(&headers);
    match shared.exporter.scrape(format).await {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(error) => {
            log::warn!("scrape: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response()
        }
    }
}

/// A number parameter; absent or unreadable ones take the default.
fn number(params: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    params
        .get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `/api/events?after=&limit=&wait=`
#[derive(Debug, PartialEq, Eq)]
struct EventsQuery {
    /// Sequence number of the last event seen; 0 for the newest.
    after: u64,
    limit: usize,
    /// Long poll: how long to wait for new events when there are none, capped below the
    /// handler deadline.
    wait: Duration,
}

impl EventsQuery {
    fn from_params(params: &HashMap<String, String>) -> EventsQuery {
        EventsQuery {
            after: number(params, "after", 0),
            limit: number(params, "limit", 100).clamp(1, 4096) as usize,
            wait: Duration::from_secs(number(params, "wait", 0)).min(MAX_EVENTS_WAIT),
        }
    }
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let query = EventsQuery::from_params(&params);
    // Registered before looking, so a batch that lands in between still wakes us.
    let notified = shared.new_events.notified();
    let mut events = shared.events_after(query.after, query.limit);
    if events.is_empty() && !query.wait.is_zero() {
        let _ = tokio::time::timeout(query.wait, notified).await;
        events = shared.events_after(query.after, query.limit);
    }
    Json(events)
}

/// `/api/capture/ring?iface=&reason=a,b&zone=&src=&include_passed=`: the rolling capture as
/// pcapng.
async fn capture_ring(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(rings) = shared.rings.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            "the rolling capture is off (sipguard run --capture-ring-bytes)\n",
        )
            .into_response();
    };
    let list = |name: &str| -> Vec<String> {
        params
            .get(name)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let source = match params
        .get("src")
        .map(|s| crate::policy::parse_net(s))
        .transpose()
    {
        Ok(source) => source,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let filter = crate::capture::Filter {
        reasons: list("reason"),
        zones: list("zone"),
        source,
        include_passed: number(&params, "include_passed", 0) != 0,
        ..crate::capture::Filter::default()
    };
    if let Err(error) = filter.control(crate::capture::Budget::default(), 1) {
        return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
    }
    match rings.save(&filter, params.get("iface").map(String::as_str)) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "application/x-pcapng")],
            Bytes::from(bytes),
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}\n")).into_response(),
    }
}

async fn top(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    Json(shared.top_view(number(&params, "limit", 20) as usize))
}

/// The body of `POST /api/strike`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrikeRequest {
    /// The client's IPv4 or IPv6 address.
    address: String,
    /// `auth_failures` (the only one, and the default).
    reason: Option<String>,
    /// Failures to count, 1 to [`MAX_STRIKES`]; 1 when left out.
    count: Option<u32>,
    /// The interface (label, `eth0` or `eth0@ns`); needed when the daemon serves several.
    interface: Option<String>,
}

/// A strike to apply: the request checked.
#[derive(Debug)]
struct Strike {
    address: IpAddr,
    count: u32,
    target: Target,
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

impl StrikeRequest {
    fn check(body: &[u8], targets: &[Target]) -> Result<Strike, String> {
        let request: StrikeRequest =
            serde_json::from_slice(body).map_err(|error| format!("bad request body: {error}"))?;
        let address = request
            .address
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("'{}' is not an IP address", request.address))?;
        match request.reason.as_deref() {
            None | Some("auth_failures") => {}
            Some(other) => return Err(format!("unknown reason '{other}' (auth_failures)")),
        }
        let count = request.count.unwrap_or(1);
        if !(1..=MAX_STRIKES).contains(&count) {
            return Err(format!("count {count} is not within 1..={MAX_STRIKES}"));
        }
        let target = match (&request.interface, targets) {
            (Some(name), _) => targets
                .iter()
                .find(|target| target.label() == *name || target.iface() == name)
                .ok_or_else(|| format!("this daemon does not serve interface '{name}'"))?,
            (None, [only]) => only,
            (None, []) => return Err("this daemon serves no interface".into()),
            (None, _) => {
                return Err(
                    "this daemon serves several interfaces: name one (\"interface\")".into(),
                );
            }
        };
        Ok(Strike {
            address,
            count,
            target: target.clone(),
        })
    }
}

/// `POST /api/strike`: auth failures the SBC reports (`sipguard strike`). Changes kernel
/// state, so it answers only to this host, whatever address the daemon listens on.
async fn strike(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<Peer>>,
    body: Bytes,
) -> Response {
    let caller = peer.as_ref().map(|Extension(peer)| peer.0.to_string());
    if !peer.is_some_and(|Extension(peer)| peer.is_loopback()) {
        return json_error(
            StatusCode::FORBIDDEN,
            "strikes are taken from loopback only",
        );
    }
    let strike = match StrikeRequest::check(&body, &shared.targets) {
        Ok(strike) => strike,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, message),
    };
    let label = strike.target.label();
    let who = crate::journal::Who::api(
        caller.as_deref().unwrap_or("?"),
        format!("POST /api/strike {}", String::from_utf8_lossy(&body)),
    );
    let outcome = tokio::task::spawn_blocking(move || {
        LiveState::lock(&strike.target)?.journaled("strike", &who, |live| {
            live.strike(strike.address, strike.count, boot_now_ns())
        })
    })
    .await;
    match outcome {
        Ok(Ok(outcome)) => {
            log::info!("{label}: strike: {}", outcome.describe());
            let mut answer = serde_json::to_value(&outcome).unwrap_or_default();
            if let Some(fields) = answer.as_object_mut() {
                fields.insert("interface".into(), label.into());
            }
            Json(answer).into_response()
        }
        Ok(Err(error @ LiveError::AuthFailuresOff)) => {
            json_error(StatusCode::CONFLICT, error.to_string())
        }
        Ok(Err(error)) => {
            log::warn!("{label}: strike: {error}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
        Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found(method: Method) -> (StatusCode, &'static str) {
    if method == Method::GET {
        (StatusCode::NOT_FOUND, "not found\n")
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, "GET only\n")
    }
}

async fn method_not_allowed() -> (StatusCode, &'static str) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed (GET; POST for /api/strike)\n",
    )
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        http::{HeaderValue, Request},
    };
    use tower::ServiceExt as _;

    use super::*;
    use crate::daemon::metrics::{DaemonCounters, Exporter};

    /// The answer of a daemon without interfaces: status, Content-Type, body.
    async fn answer(method: Method, uri: &str, accept: &str) -> (StatusCode, String, String) {
        let exporter = Exporter::new(Vec::new(), Arc::new(DaemonCounters::default()));
        let app = router(Arc::new(Shared::new(exporter, Vec::new())));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn routes_answer_like_the_old_server() {
        let (status, _, body) = answer(Method::GET, "/healthz", "*/*").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let (status, kind, body) = answer(Method::GET, "/api/events?after=0&wait=0", "").await;
        assert_eq!(
            (status, kind.as_str(), body.as_str()),
            (StatusCode::OK, "application/json", "[]")
        );
        let (status, _, body) = answer(Method::GET, "/api/top?limit=5", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"sources\":[]"), "{body}");
        let (status, kind, body) = answer(Method::GET, "/metrics", "text/plain").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, MetricsFormat::Text.content_type())
        );
        assert!(body.contains("sipguard_build_info") && !body.contains("# EOF"));
        let (_, kind, body) = answer(
            Method::GET,
            "/metrics",
            "application/openmetrics-text; version=1.0.0",
        )
        .await;
        assert_eq!(kind, MetricsFormat::OpenMetrics.content_type());
        assert!(body.ends_with("# EOF\n"));
        let (status, _, _) = answer(Method::GET, "/nowhere", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for uri in ["/metrics", "/nowhere"] {
            let (status, _, _) = answer(Method::POST, uri, "").await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "POST {uri}");
        }
    }

    /// The answer to `POST /api/strike` from `peer` (none: no peer known) with `body`.
    async fn strike_answer(peer: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let exporter = Exporter::new(Vec::new(), Arc::new(DaemonCounters::default()));
        let app = router(Arc::new(Shared::new(exporter, Vec::new())));
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/strike")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        if let Some(peer) = peer {
            request.extensions_mut().insert(Peer(peer.parse().unwrap()));
        }
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn strikes_come_from_loopback_with_a_valid_body() {
        let good = r#"{"address": "198.18.3.12", "reason": "auth_failures", "count": 1}"#;
        for peer in [None, Some("198.18.0.7:40000"), Some("[2001:db8::1]:40000")] {
            let (status, body) = strike_answer(peer, good).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{peer:?}");
            assert!(
                body["error"].as_str().unwrap().contains("loopback"),
                "{body}"
            );
        }
        for (body, says) in [
            ("", "bad request body"),
            ("{", "bad request body"),
            (r#"{"count": 1}"#, "missing field `address`"),
            (r#"{"address": "not-an-ip"}"#, "not an IP address"),
            (r#"{"address": "198.18.3.12", "count": 0}"#, "count 0"),
            (r#"{"address": "198.18.3.12", "count": 1001}"#, "count 1001"),
            (
                r#"{"address": "198.18.3.12", "reason": "scanner"}"#,
                "unknown reason",
            ),
            (
                r#"{"address": "198.18.3.12", "port": 5060}"#,
                "unknown field",
            ),
            (good, "serves no interface"),
            (r#"{"address": "::1", "interface": "eth9"}"#, "'eth9'"),
        ] {
            for peer in ["127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000"] {
                let (status, answer) = strike_answer(Some(peer), body).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body} from {peer}");
                let error = answer["error"].as_str().unwrap_or_default();
                assert!(error.contains(says), "{body}: {error}");
            }
        }
        let (status, _, _) = answer(Method::GET, "/api/strike", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn event_queries_take_defaults_and_caps() {
        assert_eq!(
            EventsQuery::from_params(&params(&[])),
            EventsQuery {
                after: 0,
                limit: 100,
                wait: Duration::ZERO
            }
        );
        let query = EventsQuery::from_params(&params(&[
            ("after", "42"),
            ("limit", "100000"),
            ("wait", "3600"),
        ]));
        assert_eq!((query.after, query.limit), (42, 4096));
        assert_eq!(query.wait, MAX_EVENTS_WAIT, "the long poll is capped");
        assert!(MAX_EVENTS_WAIT < HANDLER_DEADLINE);
        let odd = EventsQuery::from_params(&params(&[("limit", "0"), ("wait", "soon")]));
        assert_eq!((odd.limit, odd.wait), (1, Duration::ZERO));
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let mut headers = HeaderMap::new();
        assert_eq!(wanted_format(&headers), MetricsFormat::Text);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
            ),
        );
        assert_eq!(wanted_format(&headers), MetricsFormat::OpenMetrics);
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        assert_eq!(wanted_format(&headers), MetricsFormat::Text);
    }
}
