//! `sipguard run`

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context as _, Result};
use sipguard_common::abi::Mode;

use super::{Global, attach::parse_mode, load_policy};
use crate::{
    daemon::{
        DEFAULT_LISTEN, DaemonConfig, PolicyReload, ProviderLists, capture_ring::RingConfig,
        fleet::FleetConfig, serve,
    },
    dataplane::{AttachRequest, XdpModeChoice, attach},
    fleet::{FleetSettings, check_name, check_redis_url},
    state::State,
};

/// Attach (or keep) the filter and stay running: log drop events, track top offenders, serve
/// Prometheus metrics and a JSON API.
///
/// Filtering does not depend on this process: stop, restart or upgrade it at any time; the
/// kernel keeps filtering and counting.
///
/// Signals: SIGHUP reads the --policy file again and applies it to every interface (journaled
/// like `sipguard apply`; a file with errors is reported with file:line and the running policy
/// stays) and reopens the event log; SIGUSR1 only reopens the event log (for logrotate).
/// Under systemd (Type=notify) it reports readiness and reloads through $NOTIFY_SOCKET.
///
///   sipguard run --iface eth0 --policy /etc/sipguard/policy.toml --events /var/log/sipguard/events.jsonl
///   curl -s http://127.0.0.1:9968/metrics
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Interfaces to filter (repeat the option for several).
    #[arg(long = "iface", required = true, value_parser = super::iface_name)]
    ifaces: Vec<String>,
    /// Policy file to apply to every interface (and again on SIGHUP); without it the pinned (or
    /// starter) policy stays.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// enforce or monitor; overrides the policy's mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// XDP hook for new attachments: native, skb, or auto.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
    /// JSON-lines event log; `-` for standard output.
    #[arg(long, default_value = "-")]
    events: String,
    /// Address of /metrics and the /api used by `sipguard events` and `sipguard top`.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve interfaces already attached without attaching or changing anything.
    #[arg(long)]
    no_attach: bool,
    /// Keep a rolling capture of drops in memory, up to this many bytes per interface (0: off,
    /// the default); `sipguard capture --from-ring` saves it.
    #[arg(long, default_value_t = 0)]
    capture_ring_bytes: usize,
    /// How far back the rolling capture goes.
    #[arg(long, default_value_t = 10)]
    capture_ring_minutes: u64,
    /// With `[access] unverified = "under-attack"`: the new-source budget saturated this long
    /// is an attack (the access gate shuts to unverified sources).
    #[arg(long, default_value = "5s", value_parser = crate::policy::parse_duration)]
    attack_saturated_for: std::time::Duration,
    /// ... and so are more access-zone drops a second than this.
    #[arg(long, default_value_t = 5000.0)]
    attack_drops_per_second: f64,
    /// The gate opens again after this long without a sign of attack.
    #[arg(long, default_value = "60s", value_parser = crate::policy::parse_duration)]
    attack_quiet_for: std::time::Duration,
    /// Share bans, runtime allow/deny entries and the lockdown with the other hosts of a fleet
    /// through this Redis: redis://host:6379/0, or rediss:// for TLS (overrides `[fleet] redis`).
    #[arg(long, env = "SIPGUARD_FLEET_REDIS", value_name = "URL")]
    fleet_redis: Option<String>,
    /// The fleet's name: hosts share only within one (default: `[fleet] name`, or sipguard).
    #[arg(long, value_name = "NAME")]
    fleet_name: Option<String>,
    /// This host's name in the fleet (default: `[fleet] host`, or the machine's host name).
    #[arg(long, value_name = "NAME")]
    fleet_host: Option<String>,
    /// A file holding the Redis password (AUTH), so that it is on no command line.
    #[arg(long, value_name = "FILE")]
    fleet_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the rediss:// server's certificate (a private CA).
    #[arg(long, value_name = "FILE")]
    fleet_ca_file: Option<PathBuf>,
}

impl Args {
    /// `[fleet]` of the policy with the flags over it; `None`: no fleet.
    fn fleet(&self, policy: Option<&crate::policy::Policy>) -> Result<Option<FleetConfig>> {
        let from_policy = policy.and_then(|policy| policy.fleet.clone());
        let mut settings = match (&self.fleet_redis, from_policy) {
            (None, None) => {
                let stray = self.fleet_name.is_some()
                    || self.fleet_host.is_some()
                    || self.fleet_password_file.is_some()
                    || self.fleet_ca_file.is_some();
                anyhow::ensure!(
                    !stray,
                    "--fleet-name, --fleet-host, --fleet-password-file and --fleet-ca-file need \
                     --fleet-redis (or [fleet] redis in the policy)"
                );
                return Ok(None);
            }
            (Some(url), Some(mut settings)) => {
                settings.redis = url.clone();
                settings
            }
            (Some(url), None) => FleetSettings::new(url),
            (None, Some(settings)) => settings,
        };
        if let Some(name) = &self.fleet_name {
            settings.name = name.clone();
        }
        if let Some(host) = &self.fleet_host {
            settings.host = host.clone();
        }
        if let Some(file) = &self.fleet_password_file {
            settings.password_file = Some(file.clone());
        }
        if let Some(file) = &self.fleet_ca_file {
            settings.ca_file = Some(file.clone());
        }
        check_redis_url(&settings.redis).map_err(anyhow::Error::msg)?;
        for name in [&settings.name, &settings.host] {
            check_name(name).map_err(anyhow::Error::msg)?;
        }
        let config = FleetConfig::new(settings)?;
        // A URL Redis's client cannot use is refused now, before anything is attached.
        config.check()?;
        Ok(Some(config))
    }
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let policy = match load_policy(args.policy.as_deref()) {
        Ok(policy) => policy,
        Err(status) => return Ok(status),
    };
    // Provider lists: fetched once before attaching (the cache stands in for a source that is
    // down), then refreshed by the daemon.
    // With a policy the refresh runs even without sources: SIGHUP may bring some.
    let (effective, lists) = match &policy {
        Some(base) => {
            let (effective, lists) = global.with_lists(base.clone())?;
            (Some(effective), Some(lists))
        }
        None => (None, None),
    };
    let fleet = args.fleet(policy.as_ref())?;
    let mut targets = Vec::new();
    for iface in &args.ifaces {
        let target = global.target(Some(iface))?;
        if args.no_attach {
            State::open(&target)?;
        } else {
            let report = attach(&AttachRequest {
                target: target.clone(),
                xdp_mode: args.xdp_mode,
                policy: effective.as_ref(),
                mode: args.mode,
            })
            .with_context(|| format!("attach to {}", target.label()))?;
            eprintln!(
                "sipguard: {} {} ({} XDP, program {})",
                target.label(),
                if report.replaced_program {
                    "program replaced"
                } else {
                    "attached"
                },
                report.xdp_mode,
                report.program_id
            );
        }
        targets.push(target);
    }
    serve(DaemonConfig {
        targets,
        events_file: (args.events != "-").then(|| PathBuf::from(&args.events)),
        listen: args.listen,
        lists: policy
            .zip(lists)
            .map(|(policy, lists)| ProviderLists { policy, lists }),
        // --no-attach changes nothing, also on SIGHUP.
        reload: args
            .policy
            .filter(|_| !args.no_attach)
            .map(|file| PolicyReload {
                file,
                mode: args.mode,
            }),
        capture_ring: (args.capture_ring_bytes > 0).then(|| RingConfig {
            max_bytes: args.capture_ring_bytes,
            max_age: std::time::Duration::from_secs(args.capture_ring_minutes.saturating_mul(60)),
        }),
        attack: crate::attack::AttackSettings {
            saturated_for: args.attack_saturated_for,
            drops_per_second: args.attack_drops_per_second,
            quiet_for: args.attack_quiet_for,
        },
        fleet,
    })?;
    Ok(0)
}
