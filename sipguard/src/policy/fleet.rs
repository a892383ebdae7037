//! `[fleet]`: the settings of fleet mode (`crate::fleet`), checked without any network.

use std::path::PathBuf;

/// `[fleet]` in the policy, or `sipguard run --fleet-*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// `redis://[user:password@]host:port/db` or `rediss://` (TLS).
    pub redis: String,
    /// Hosts share state only within one fleet (the Redis key prefix `sipguard:{name}:`).
    pub name: String,
    /// This host's name in the fleet: the origin other hosts show for what it shares.
    pub host: String,
    /// A file holding the Redis password (AUTH), kept off command lines and policy files.
    pub password_file: Option<PathBuf>,
    /// PEM certificates of the CA that signed a `rediss://` server's certificate, when it is
    /// not one the web trusts (a private CA); without it, the webpki roots.
    pub ca_file: Option<PathBuf>,
}

impl FleetSettings {
    /// Settings for `redis` with the default fleet name and this machine's host name.
    pub fn new(redis: &str) -> FleetSettings {
        FleetSettings {
            redis: redis.to_string(),
            name: "sipguard".to_string(),
            host: default_host_name(),
            password_file: None,
            ca_file: None,
        }
    }
}

/// The machine's host name (`uname -n`), or `sipguard` when it has none.
pub fn default_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| check_name(name).is_ok())
        .unwrap_or_else(|| "sipguard".to_string())
}

/// A Redis URL as `sipguard run` accepts it.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "redis '{url}' is not a Redis URL (redis://host:6379/0, or rediss:// for TLS)"
        )),
    }
}

/// Fleet and host names: they go into Redis keys and onto every shared item.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a fleet or host name (1-64 of letters, digits, '-', '_', '.')"
        ))
    }
}
