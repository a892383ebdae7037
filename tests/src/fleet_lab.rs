//! The fleet lab (issue 16): two or three SBC hosts sharing bans, runtime list entries and the
//! lockdown through one Redis server, each with its own attacker.
//!
//! ```text
//!  attacker i (198.18.50.66/24) --atk0 == sbc0 [XDP]-- SBC i (198.18.50.1/24)
//!                                                        | fleet0 198.18.100.(4i+1)/30
//!                                                        |
//!                                   redis (198.18.100.(4i+2)/30 on fl<i>, redis-server *:6379)
//! ```
//!
//! Every SBC and every attacker has the same addresses, so one attacker address reaches every
//! host; each SBC reaches Redis only over its own `fleet0` link, which [`FleetHost::partition`]
//! takes down. redis-server runs in the foreground in its own namespace with a random password
//! (kept in files, never on a command line), no persistence (a restart starts empty) and its own
//! directory. `sipguard run` runs per host with its own pin root, journal and log files.
//! Everything (daemons, redis-server, attack tools, namespaces, pins, files) goes on drop, also
//! when a test panics.

use std::{
    fmt::Write as _,
    fs,
    io::Read as _,
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{
    frames::Packet,
    lab::{inject, mac_of, wait_until},
    netns::{NetNs, add_addr, veth},
    pins::TempPinRoot,
    sipguard_bin,
};

/// The SBC's filtered interface (XDP), toward its attacker.
pub const SBC_IF: &str = "sbc0";
/// The attacker's end of that link.
pub const ATTACKER_IF: &str = "atk0";
/// The SBC's link to the Redis namespace.
pub const FLEET_IF: &str = "fleet0";
/// Every SBC's address on `sbc0`.
pub const SBC_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 1);
/// Every attacker's address: the same source hits every host.
pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 66);
/// The access zone's port in [`policy`].
pub const ACCESS_PORT: u16 = 5070;
pub const REDIS_PORT: u16 = 6379;
/// Where each daemon serves /metrics, on the loopback of its own SBC namespace.
pub const LISTEN: &str = "127.0.0.1:9464";
/// The fleet's name (`--fleet-name`).
pub const FLEET: &str = "lab";
/// The hosts' fleet names (`--fleet-host`), in order.
pub const HOST_NAMES: [&str; 3] = ["sbc-a", "sbc-b", "sbc-c"];

/// A policy for the lab's SBCs: an access zone on udp/5070 open to unknown sources within a
/// generous budget, the built-in scanner signatures banning at the first request (SIPVicious's
/// friendly-scanner among them), a trunk on udp/5060 for allowlisted sources only, and
/// `allow` as the policy's allowlist (none when empty).
pub fn policy(allow: &[&str]) -> String {
    let mut text = String::from(
        r#"mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 1000, burst = 1000 }
[bans]
threshold = 100
window = "10s"
ttl = "15m"
[classes]
phones = { rate = 1000, burst = 1000 }
[scanners]
builtin = true
ban = true
"#,
    );
    if !allow.is_empty() {
        let cidrs = allow
            .iter()
            .map(|cidr| format!("\"{cidr}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(text, "[[allow]]\nname = \"partners\"\ncidrs = [{cidrs}]\n");
    }
    text
}

/// How a host's daemon is told about the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetConfig {
    /// `--fleet-redis`, `--fleet-name`, `--fleet-host`, `--fleet-password-file`.
    Flags,
    /// A `[fleet]` section in the policy file (`redis`, `name`, `host`, `password_file`).
    PolicySection,
    /// No fleet: a lone host (a control).
    Off,
}

/// A child process killed (SIGKILL) and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One fleet lab at a time in a test process (`cargo test` runs a file's tests in parallel):
/// several labs' daemons would compete for the CPUs and blur the fleet's one-second bound.
static TURN: Mutex<()> = Mutex::new(());

pub struct FleetLab {
    /// Declared first: daemons stop before Redis and before anything else goes.
    pub hosts: Vec<FleetHost>,
    pub redis: Redis,
    /// Logs, policies, password files, Redis' directory; removed after the rest.
    dir: tempfile::TempDir,
    /// Released last, once everything of this lab is gone.
    _turn: MutexGuard<'static, ()>,
}

impl FleetLab {
    /// `hosts` SBC hosts (2 or 3), their attackers and the Redis namespace, linked and
    /// addressed; redis-server started and answering. No daemon runs yet.
    pub fn new(tag: &str, hosts: usize) -> Result<FleetLab> {
        crate::require_root();
        assert!((1..=HOST_NAMES.len()).contains(&hosts), "1 to 3 hosts");
        // A test that panicked while holding the turn left its lab cleaned up by then.
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipguard-fleet-{tag}-"))
            .tempdir()?;
        let password = random_hex(16)?;
        let redis_ns = NetNs::new(&format!("{tag}-redis"))?;
        let mut built = Vec::new();
        for (index, name) in HOST_NAMES.iter().enumerate().take(hosts) {
            built.push(FleetHost::new(
                tag,
                index,
                name,
                &redis_ns,
                dir.path(),
                &password,
            )?);
        }
        let redis = Redis::start(redis_ns, dir.path().join("redis"), password)?;
        Ok(FleetLab {
            hosts: built,
            redis,
            dir,
            _turn: turn,
        })
    }

    pub fn host(&self, index: usize) -> &FleetHost {
        &self.hosts[index]
    }

    pub fn host_mut(&mut self, index: usize) -> &mut FleetHost {
        &mut self.hosts[index]
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts every host's daemon with the same policy, configured by flags.
    pub fn start_all(&mut self, policy_text: &str) -> Result<()> {
        for host in &mut self.hosts {
            host.start(policy_text, FleetConfig::Flags)?;
        }
        Ok(())
    }
}

/// One SBC host: its namespace and attacker, pin root, files, and (once started) its daemon.
pub struct FleetHost {
    /// The fleet's name for this host (`--fleet-host`).
    pub name: &'static str,
    daemon: Option<Running>,
    pub sbc: NetNs,
    pub attacker: NetNs,
    pins: TempPinRoot,
    dir: PathBuf,
    /// Redis' address on this host's fleet link.
    pub redis_addr: Ipv4Addr,
    /// This host's own address on the fleet link.
    pub fleet_addr: Ipv4Addr,
}

impl FleetHost {
    fn new(
        tag: &str,
        index: usize,
        name: &'static str,
        redis_ns: &NetNs,
        lab_dir: &Path,
        password: &str,
    ) -> Result<FleetHost> {
        let sbc = NetNs::new(&format!("{tag}-sbc{index}"))?;
        let attacker = NetNs::new(&format!("{tag}-atk{index}"))?;
        veth(&attacker, ATTACKER_IF, &sbc, SBC_IF)?;
        add_addr(&sbc, SBC_IF, &format!("{SBC_V4}/24"))?;
        add_addr(&attacker, ATTACKER_IF, &format!("{ATTACKER_V4}/24"))?;
        // Static neighbours both ways: nothing waits for ARP, which XDP would only count.
        let sbc_mac = mac_text(&sbc, SBC_IF)?;
        let attacker_mac = mac_text(&attacker, ATTACKER_IF)?;
        attacker.ip(&[
            "neigh",
            "replace",
            &SBC_V4.to_string(),
            "lladdr",
            &sbc_mac,
            "dev",
            ATTACKER_IF,
            "nud",
            "permanent",
        ])?;
        sbc.ip(&[
            "neigh",
            "replace",
            &ATTACKER_V4.to_string(),
            "lladdr",
            &attacker_mac,
            "dev",
            SBC_IF,
            "nud",
            "permanent",
        ])?;
        let redis_if = format!("fl{index}");
        veth(&sbc, FLEET_IF, redis_ns, &redis_if)?;
        let base = 4 * u8::try_from(index)?;
        let fleet_addr = Ipv4Addr::new(198, 18, 100, base + 1);
        let redis_addr = Ipv4Addr::new(198, 18, 100, base + 2);
        add_addr(&sbc, FLEET_IF, &format!("{fleet_addr}/30"))?;
        add_addr(redis_ns, &redis_if, &format!("{redis_addr}/30"))?;

        let dir = lab_dir.join(name);
        fs::create_dir_all(dir.join("home"))?;
        write_private(&dir.join("fleet-password"), password)?;
        Ok(FleetHost {
            name,
            daemon: None,
            sbc,
            attacker,
            pins: TempPinRoot::new(&format!("fleet-{tag}-{index}")),
            dir,
            redis_addr,
            fleet_addr,
        })
    }

    /// This host's files: policy, logs, journal, password file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.join("fleet-password")
    }

    /// `redis://<redis on this host's link>:6379/0` (the password comes from the file).
    pub fn redis_url(&self) -> String {
        format!("redis://{}:{REDIS_PORT}/0", self.redis_addr)
    }

    /// `sipguard --pin-root <own> --netns <sbc> --journal-dir <own>` and nothing else yet.
    pub fn command(&self) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--netns", self.sbc.name()])
            .arg("--journal-dir")
            .arg(self.dir.join("journal"));
        command
    }

    /// Runs a sipguard command against this host; its stdout, or an error with its stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut command = self.command();
        command.args(args);
        let output = output_within(command, COMMAND_LIMIT).context("run sipguard")?;
        if !output.status.success() {
            bail!(
                "{}: sipguard {}: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A sipguard command's `--json` output.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let text = self.cli(args)?;
        serde_json::from_str(&text).with_context(|| format!("JSON of {args:?}: {text}"))
    }

    /// Starts `sipguard run` on `sbc0` (native XDP) with `policy_text` and the fleet settings,
    /// and waits until it answers on /healthz.
    pub fn start(&mut self, policy_text: &str, config: FleetConfig) -> Result<()> {
        self.stop();
        let policy_file = self.dir.join("policy.toml");
        let mut text = policy_text.to_string();
        if config == FleetConfig::PolicySection {
            let _ = write!(
                text,
                "\n[fleet]\nredis = \"{}\"\nname = \"{FLEET}\"\nhost = \"{}\"\npassword_file = \"{}\"\n",
                self.redis_url(),
                self.name,
                self.password_file().display()
            );
        }
        fs::write(&policy_file, text)?;
        let mut command = self.command();
        command
            .args(["run", "--iface", SBC_IF, "--xdp-mode", "native", "--listen"])
            .arg(LISTEN)
            .arg("--policy")
            .arg(&policy_file)
            .arg("--events")
            .arg(self.dir.join("events.jsonl"));
        if config == FleetConfig::Flags {
            command
                .args(["--fleet-redis", &self.redis_url()])
                .args(["--fleet-name", FLEET, "--fleet-host", self.name])
                .arg("--fleet-password-file")
                .arg(self.password_file());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.dir.join("daemon.out"))?)
            .stderr(fs::File::create(self.dir.join("daemon.err"))?)
            .spawn()
            .context("start sipguard run")?;
        let mut running = Running(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = running.0.try_wait()? {
                bail!(
                    "{}: sipguard run exited ({status}): {}",
                    self.name,
                    self.daemon_log(20)
                );
            }
            if self.get("/healthz").is_some() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: sipguard run does not answer on {LISTEN} after 30 s: {}",
                    self.name,
                    self.daemon_log(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.daemon = Some(running);
        Ok(())
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 5 s); the kernel keeps filtering.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.daemon.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(running.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(running.0.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// True while the daemon process runs.
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|running| matches!(running.0.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of the daemon's stderr and stdout (for failure messages).
    pub fn daemon_log(&self, lines: usize) -> String {
        let mut all = String::new();
        for file in ["daemon.err", "daemon.out"] {
            let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            let _ = write!(
                all,
                "\n--- {} {file} (last {} lines) ---\n{}",
                self.name,
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        all
    }

    /// GET from the daemon, inside the SBC namespace; None when it does not answer.
    pub fn get(&self, path: &str) -> Option<String> {
        let path = path.to_string();
        self.sbc
            .run(move || {
                sipguard::cli::client::get(
                    LISTEN.parse().expect("address"),
                    &path,
                    Duration::from_secs(5),
                )
            })
            .ok()
            .and_then(Result::ok)
            .flatten()
    }

    /// The daemon's /metrics ("" when it does not answer).
    pub fn metrics(&self) -> String {
        self.get("/metrics").unwrap_or_default()
    }

    /// One sample of the daemon's /metrics: `name{labels...} value`, every label fragment in
    /// `labels` present (e.g. `kind="ban"`); None when there is no such sample.
    pub fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        sample(&self.metrics(), name, labels)
    }

    /// `sipguard_fleet_connected{fleet="lab"}`.
    pub fn fleet_connected(&self) -> Option<f64> {
        self.metric("sipguard_fleet_connected", &[&format!("fleet=\"{FLEET}\"")])
    }

    /// `sipguard bans list --json`: the bans in force.
    pub fn bans(&self) -> Result<Vec<BanRow>> {
        let rows = self.cli_json(&["bans", "list", "--iface", SBC_IF, "--json"])?;
        Ok(rows
            .as_array()
            .context("bans list --json is an array")?
            .iter()
            .map(BanRow::from_json)
            .collect())
    }

    /// The ban of `source` (as `bans list` spells it, e.g. `198.18.50.66`), if any.
    pub fn ban_of(&self, source: &str) -> Option<BanRow> {
        self.bans()
            .ok()?
            .into_iter()
            .find(|row| row.source == source)
    }

    /// `sipguard allow|deny list --json`: (prefix, origin) of each entry.
    pub fn entries(&self, list: &str) -> Result<Vec<(String, String)>> {
        let rows = self.cli_json(&[list, "list", "--iface", SBC_IF, "--json"])?;
        Ok(rows
            .as_array()
            .context("list --json is an array")?
            .iter()
            .map(|row| {
                (
                    row["prefix"].as_str().unwrap_or_default().to_string(),
                    row["origin"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// `sipguard lockdown`: off, allowlisted, allowlisted+verified.
    pub fn lockdown(&self) -> Result<String> {
        Ok(self
            .cli(&["lockdown", "--iface", SBC_IF])?
            .trim()
            .to_string())
    }

    /// Packets counted by the kernel with `reason` and `outcome` (dropped, passed), all zones.
    pub fn counter(&self, reason: &str, outcome: &str) -> Result<u64> {
        let stats = self.cli_json(&["stats", "--iface", SBC_IF, "--json"])?;
        Ok(stats["counters"]
            .as_array()
            .context("stats counters")?
            .iter()
            .filter(|row| row["reason"] == reason && row["outcome"] == outcome)
            .filter_map(|row| row["packets"].as_u64())
            .sum())
    }

    /// Cuts this host off Redis: `fleet0` down.
    pub fn partition(&self) -> Result<()> {
        self.sbc.ip(&["link", "set", FLEET_IF, "down"])?;
        Ok(())
    }

    /// Brings `fleet0` back up.
    pub fn heal(&self) -> Result<()> {
        self.sbc.ip(&["link", "set", FLEET_IF, "up"])?;
        Ok(())
    }

    /// Sends one SIP request per source from the attacker's link, each with a spoofed source
    /// address and SIPVicious' User-Agent (`friendly-scanner`): each is banned at once (reason
    /// scanner) on this host.
    pub fn inject_scanners(&self, sources: &[Ipv4Addr]) -> Result<()> {
        self.inject_options(sources, "friendly-scanner")
    }

    /// Sends one OPTIONS per source to the access port from the attacker's link (raw frames,
    /// spoofed source addresses) with `user_agent`.
    pub fn inject_options(&self, sources: &[Ipv4Addr], user_agent: &str) -> Result<()> {
        let sbc_mac = mac_of(&self.sbc, SBC_IF)?;
        let attacker_mac = mac_of(&self.attacker, ATTACKER_IF)?;
        let frames: Vec<Vec<u8>> = sources
            .iter()
            .map(|source| {
                Packet::udp4(
                    *source,
                    SBC_V4,
                    5060,
                    ACCESS_PORT,
                    options_from(*source, user_agent),
                )
                .with_macs(attacker_mac, sbc_mac)
                .build()
            })
            .collect();
        self.attacker
            .run(move || inject(ATTACKER_IF, &frames))
            .map_err(|e| anyhow::anyhow!("{e}"))??;
        Ok(())
    }

    /// Starts SIPVicious svcrack from this host's attacker against its SBC's access port
    /// (account 1001, passwords `range`, `-t` 0.2 s, giving up after `maximum_time` seconds
    /// without an answer).
    pub fn svcrack(&self, range: &str, maximum_time: u32) -> Result<Attack> {
        let out = self.dir.join("svcrack.out");
        let output = fs::File::create(&out)?;
        let child = self
            .attacker
            .command("sipvicious_svcrack")
            .args([&SBC_V4.to_string(), "-p", &ACCESS_PORT.to_string()])
            .args(["-b", &ATTACKER_V4.to_string(), "-u", "1001", "-r", range])
            .args(["-t", "0.2", "--maximumtime", &maximum_time.to_string()])
            .current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("start sipvicious_svcrack")?;
        Ok(Attack {
            running: Running(child),
            out,
        })
    }
}

/// An attack tool running from an attacker namespace; killed on drop.
pub struct Attack {
    running: Running,
    out: PathBuf,
}

impl Attack {
    /// Waits until the tool ends by itself or `limit` passes (then kills it); what it printed.
    pub fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while matches!(self.running.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.running.0.kill();
        let _ = self.running.0.wait();
        fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        // The daemon first (SIGKILL: it leaves its pins, which the pin root's guard removes).
        self.daemon.take();
    }
}

/// An OPTIONS from `source` with `user_agent` (and no other sign of a scanner).
fn options_from(source: Ipv4Addr, user_agent: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:100@{SBC_V4} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:5060;branch=z9hG4bK-{source}\r\n\
         From: <sip:100@{source}>;tag=6331\r\nTo: <sip:100@{SBC_V4}>\r\n\
         Call-ID: {source}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// One row of `sipguard bans list --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanRow {
    pub source: String,
    pub reason: String,
    /// None when the field is absent; `local` or a fleet host's name.
    pub origin: Option<String>,
    pub expires_at_unix: u64,
}

impl BanRow {
    fn from_json(row: &Value) -> BanRow {
        BanRow {
            source: row["source"].as_str().unwrap_or_default().to_string(),
            reason: row["reason"].as_str().unwrap_or_default().to_string(),
            origin: row["origin"].as_str().map(str::to_string),
            expires_at_unix: row["expires_at_unix"].as_u64().unwrap_or_default(),
        }
    }

    /// Issued on this host (origin absent or `local`).
    pub fn is_local(&self) -> bool {
        matches!(self.origin.as_deref(), None | Some("local"))
    }
}

/// redis-server in its own namespace, in the foreground, password required, nothing saved.
pub struct Redis {
    child: Option<Running>,
    /// Declared after the child: the namespace goes once the server is dead.
    pub ns: NetNs,
    dir: PathBuf,
    password: String,
    starts: u32,
}

impl Redis {
    fn start(ns: NetNs, dir: PathBuf, password: String) -> Result<Redis> {
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        // The password lives in the config file (0600), not on redis-server's command line.
        write_private(
            &dir.join("redis.conf"),
            &format!(
                "port {REDIS_PORT}\nbind 0.0.0.0\nprotected-mode no\nsave \"\"\nappendonly no\n\
                 daemonize no\nlogfile \"\"\ndir {}\nrequirepass {password}\n",
                dir.display()
            ),
        )?;
        let mut redis = Redis {
            child: None,
            ns,
            dir,
            password,
            starts: 0,
        };
        redis.restart()?;
        Ok(redis)
    }

    /// Starts redis-server (empty: nothing is saved) and waits until PING answers.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("redis-server is running");
        }
        self.starts += 1;
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let output = fs::File::create(&log)?;
        let child = self
            .ns
            .command("redis-server")
            .arg(self.dir.join("redis.conf"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("start redis-server")?;
        self.child = Some(Running(child));
        let mut last = String::new();
        let answered = wait_until(Duration::from_secs(10), || {
            match self.cli(&["PING"]) {
                Ok(answer) => last = answer,
                Err(error) => last = error.to_string(),
            }
            last.trim() == "PONG"
        });
        if !answered {
            let text = fs::read_to_string(&log).unwrap_or_default();
            bail!("redis-server does not answer PING within 10 s: {last}\n{text}");
        }
        Ok(())
    }

    /// SIGKILL, as a crash: no goodbye to clients, nothing saved.
    pub fn kill(&mut self) {
        self.child.take();
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis-cli` inside the Redis namespace, authenticated (REDISCLI_AUTH, not `-a`).
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut command = self.ns.command("redis-cli");
        command
            .args(["-h", "127.0.0.1", "-p", &REDIS_PORT.to_string()])
            .args(args)
            .env("REDISCLI_AUTH", &self.password);
        let output = output_within(command, COMMAND_LIMIT).context("run redis-cli")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() || stdout.starts_with("ERR") || stdout.starts_with("NOAUTH") {
            bail!(
                "redis-cli {}: {}{}",
                args.join(" "),
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// Every key (`SCAN`, so a large store does not block the server).
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self.cli(&["--scan"])?.lines().map(str::to_string).collect();
        keys.sort();
        Ok(keys)
    }

    /// The messages of a stream, oldest first: (id, field/value pairs), via `XRANGE key - +`.
    pub fn stream(&self, key: &str) -> Result<Vec<StreamMessage>> {
        let text = self.cli(&["-2", "--json", "XRANGE", key, "-", "+"])?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("XRANGE as JSON: {text}"))?;
        let mut messages = Vec::new();
        for message in value.as_array().context("XRANGE: an array")? {
            let id = message[0].as_str().unwrap_or_default().to_string();
            let flat: Vec<String> = message[1]
                .as_array()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let pairs = flat
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
                .collect();
            messages.push(StreamMessage { id, fields: pairs });
        }
        Ok(messages)
    }

    /// The password, for tests that talk to Redis as a host would.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// One message of a Redis stream.
#[derive(Clone, Debug)]
pub struct StreamMessage {
    pub id: String,
    /// Field/value pairs, in order.
    pub fields: Vec<(String, String)>,
}

/// The value of the first sample of `name` whose line holds every fragment of `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .next()
}

/// The sum of every sample of `name` (all label sets).
pub fn sample_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The longest a sipguard or redis-cli command may take before the lab kills it.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// Runs `command` (stdin empty, output captured), killed if it has not ended within `limit`.
pub fn output_within(mut command: Command, limit: Duration) -> Result<std::process::Output> {
    let mut child = Running(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    // Drain both pipes meanwhile: a full pipe would stall the command.
    let mut stdout = child.0.stdout.take().context("stdout")?;
    let mut stderr = child.0.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            // Program and arguments only: the environment may hold a password.
            let args: Vec<_> = command
                .get_args()
                .map(|arg| arg.to_string_lossy())
                .collect();
            bail!(
                "{} {} did not end within {limit:?}",
                command.get_program().to_string_lossy(),
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn mac_text(ns: &NetNs, iface: &str) -> Result<String> {
    Ok(mac_of(ns, iface)?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}
