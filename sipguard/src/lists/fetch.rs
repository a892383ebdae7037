//! One refresh of one source: an HTTP GET (conditional on the last good answer's ETag and
//! Last-Modified) or DNS queries (A and AAAA; SRV, then its targets' A and AAAA).

use std::{collections::BTreeSet, net::IpAddr};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{NameServerConfig, ResolveHosts, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::RData,
};
use ipnet::IpNet;

use crate::policy::{
    RemoteKind, RemoteSettings, RemoteSource,
    remote::{JsonPath, MAX_BODY_BYTES, is_srv_name, parse_json_list, parse_text_list},
};

/// What a refresh brought.
#[derive(Debug)]
pub(super) enum Fetched {
    /// 304: the last good list is still current.
    NotModified,
    Fresh {
        nets: BTreeSet<IpNet>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// ETag and Last-Modified of the last good answer.
pub(super) type Validators = (Option<String>, Option<String>);

/// Fetches or resolves `source` (a URL conditionally on `validators`); an error says why, in a
/// few words.
pub(super) async fn fetch(
    source: &RemoteSource,
    settings: &RemoteSettings,
    validators: Option<Validators>,
) -> Result<Fetched, String> {
    match &source.kind {
        RemoteKind::Url { url, json_path } => {
            let (url, json_path) = (url.clone(), json_path.clone());
            let timeout = settings.timeout;
            tokio::task::spawn_blocking(move || get(&url, json_path.as_ref(), validators, timeout))
                .await
                .map_err(|error| format!("fetch task: {error}"))?
        }
        RemoteKind::Host { name } => {
            let nets = tokio::time::timeout(settings.timeout, resolve(name, settings))
                .await
                .map_err(|_| format!("no answer within {:?}", settings.timeout))??;
            Ok(Fetched::Fresh {
                nets,
                etag: None,
                last_modified: None,
            })
        }
    }
}

/// A blocking GET with ureq; the caller runs it off the async threads.
fn get(
    url: &str,
    json_path: Option<&JsonPath>,
    validators: Option<Validators>,
    timeout: std::time::Duration,
) -> Result<Fetched, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("sipguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some((etag, last_modified)) = validators {
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(last_modified) = last_modified {
            request = request.header("If-Modified-Since", last_modified);
        }
    }
    let mut response = request.call().map_err(|error| error.to_string())?;
    let status = response.status();
    if status == ureq::http::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if status != ureq::http::StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let (etag, last_modified) = (header("etag"), header("last-modified"));
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(|error| format!("reading the body: {error}"))?;
    let nets = match json_path {
        Some(path) => parse_json_list(&body, path)?,
        None => parse_text_list(&body)?,
    };
    Ok(Fetched::Fresh {
        nets,
        etag,
        last_modified,
    })
}

/// A resolver that asks the configured server (or those of /etc/resolv.conf) and caches
/// nothing: every refresh sees the zone as it is now.
fn resolver(settings: &RemoteSettings) -> Result<TokioResolver, String> {
    let mut builder = match settings.dns_server {
        Some(server) => {
            let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut name_server.connections {
                connection.port = server.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|error| format!("/etc/resolv.conf: {error}"))?,
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = settings.timeout.min(std::time::Duration::from_secs(5));
    options.attempts = 2;
    builder.build().map_err(|error| error.to_string())
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

async fn resolve(name: &str, settings: &RemoteSettings) -> Result<BTreeSet<IpNet>, String> {
    let resolver = resolver(settings)?;
    let mut nets = BTreeSet::new();
    if is_srv_name(name) {
        let lookup = resolver
            .srv_lookup(fqdn(name))
            .await
            .map_err(|error| dns_error(name, "SRV", &error))?;
        let targets: BTreeSet<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(srv.target.to_string()),
                _ => None,
            })
            // "." means the service is not offered there (RFC 2782).
            .filter(|target| target != ".")
            .collect();
        if targets.is_empty() {
            return Err(format!("{name}: no SRV targets"));
        }
        for target in targets {
            nets.extend(addresses(&resolver, &target).await?);
        }
    } else {
        nets = addresses(&resolver, name).await?;
    }
    Ok(nets)
}

/// A and AAAA of `name`. A name without either is an error; so is a failure of either query
/// (an AAAA that times out must not quietly drop the IPv6 addresses).
async fn addresses(resolver: &TokioResolver, name: &str) -> Result<BTreeSet<IpNet>, String> {
    let mut nets = BTreeSet::new();
    for (kind, lookup) in [
        ("A", resolver.ipv4_lookup(fqdn(name)).await),
        ("AAAA", resolver.ipv6_lookup(fqdn(name)).await),
    ] {
        match lookup {
            Ok(lookup) => {
                nets.extend(
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::A(a) => Some(IpNet::from(IpAddr::V4(a.0))),
                            RData::AAAA(aaaa) => Some(IpNet::from(IpAddr::V6(aaaa.0))),
                            _ => None,
                        }),
                );
            }
            Err(error) if error.is_no_records_found() && !error.is_nx_domain() => {}
            Err(error) => return Err(dns_error(name, kind, &error)),
        }
    }
    if nets.is_empty() {
        return Err(format!("{name}: no A or AAAA records"));
    }
    Ok(nets)
}

fn dns_error(name: &str, kind: &str, error: &NetError) -> String {
    if error.is_nx_domain() {
        format!("{name} {kind}: NXDOMAIN")
    } else {
        format!("{name} {kind}: {error}")
    }
}
