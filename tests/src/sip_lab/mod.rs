//! A real SIP lab in network namespaces, joined by a bridge, all inside 198.18.0.0/15:
//!
//! ```text
//!          hub: bridge br0, 198.18.255.254 = the SBC's gateway (blackholes 198.19.0.0/16)
//!    +-----------+---------------+---------------+---------------+-----------+------------+-----------+
//!   sbc        carrier         phone          compromised     scanner     enumerator    cracker
//!   198.18.0.1 198.18.1.10/.20 198.18.2.10    198.18.2.20     198.18.3.10 198.18.3.11   198.18.3.12
//!   Kamailio   sipp UAC (in)   sipp REGISTER  sipp REGISTER,  svmap,      svwar         svcrack
//!   PBX :5090  sipp UAS (out)  sipp calls out calls and fraud svwar trunk (access)      (access,
//!   sipguard                                                  trafgen flood from 198.19.0.0/16,
//!                                                             and OPTIONS spoofing the phone
//! ```
//!
//! The compromised phone is account 1002, whose password leaked: it registers correctly, then
//! calls NANP numbers among premium and far international ones ([`fraud`]).
//!
//! svcrack is disguised and slow, as real password crackers are: it says it is a Yealink phone
//! (no scanner signature matches) and sends about two guesses a second, well within a phone's
//! budget. What stops it is the SBC's own answers: each wrong guess gets a new 401, and sipguard's
//! egress program bans the client after `[auth_failures] threshold` of them (`auth_failures`).
//! Part of the spoofed flood spoofs the registered phone's address: the phone, verified by the
//! SBC's 200 OK to its REGISTER, keeps its own budget, whose per-method budgets hold the flood's
//! OPTIONS apart from its REGISTERs and INVITEs.
//!
//! Each attacker has its own namespace: SIPVicious ignores its `-b` (bind address) option. Spoofed
//! sources are off-link, as on the internet: the SBC answers them through its gateway instead of
//! stalling on ARP for addresses that do not exist.
//!
//! One run plays the same scenario under a chosen protection (none, monitor, enforce) and measures
//! what the peers saw: sipp call statistics, the requests that reached Kamailio (logged by its
//! script, per source), Kamailio's CPU time, and sipguard's counters, bans and events.

pub mod fraud;
mod report;

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sipguard::live::source_addr;
use sipguard::{
    report::Stats,
    state::{State, Target},
};
use sipguard_common::abi::{Reason, VerifiedSource, Zone};

pub use self::{
    fraud::{CompromisedView, DropTally, Reach},
    report::{render, render_gate},
};
use crate::{
    lab::{mac_of, wait_until},
    netns::{NetNs, add_addr, run},
};

const KAMAILIO_CFG: &str = include_str!("assets/kamailio.cfg");
const CARRIER_UAC: &str = include_str!("assets/carrier-uac.xml");
const PHONE_REGISTER: &str = include_str!("assets/phone-register.xml");
const PHONE_CALL: &str = include_str!("assets/phone-call.xml");
const UAS: &str = include_str!("assets/uas.xml");
const COMPROMISED_CALL: &str = include_str!("assets/compromised-call.xml");
/// The lab SBC's sipguard policy (trunk 5060 for the carrier, access 5070 for phones).
pub const LAB_POLICY: &str = include_str!("assets/policy.toml");
/// Runs svcrack with a phone's User-Agent: SIPVicious builds every request with
/// `svhelper.makeRequest`, whose `useragent` defaults to `friendly-scanner`; svcrack imported it
/// by name, so both names are replaced.
const DISGUISED_SVCRACK: &str = "\
import sys
import sipvicious.libs.svhelper as svhelper
import sipvicious.svcrack as svcrack

USER_AGENT = sys.argv.pop(1)
original = svhelper.makeRequest


def makeRequest(*args, **kwargs):
    kwargs.setdefault('useragent', USER_AGENT)
    return original(*args, **kwargs)


svhelper.makeRequest = makeRequest
svcrack.makeRequest = makeRequest
sys.argv[0] = 'sipvicious_svcrack'
svcrack.main()
";
const DISGUISED_SVCRACK_FILE: &str = "svcrack-disguised.py";

pub const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CARRIER_UAC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const CARRIER_UAS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
pub const PHONE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
/// A phone (account 1003) that never registered before the flood: with [`LabOptions::fresh_phone`]
/// it sends its first REGISTER [`FRESH_PHONE_DELAY`] into the flood, from the phone's namespace.
pub const FRESH_PHONE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 30);
/// How long after the flood starts the fresh phone registers.
pub const FRESH_PHONE_DELAY: Duration = Duration::from_secs(3);
/// How long the fresh phone tries (its REGISTERs retransmitted meanwhile, as sipp does) before
/// its registration counts as failed.
pub const FRESH_PHONE_TIMEOUT_MS: u32 = 20_000;
/// The compromised phone (account 1002), in the access zone.
pub use self::fraud::COMPROMISED_IP;
/// svmap, and svwar against the trunk.
pub const SCANNER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 10);
/// svwar against the access zone.
pub const ENUMERATOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 11);
/// svcrack against the access zone.
pub const CRACKER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 12);
/// The User-Agent the disguised svcrack sends instead of SIPVicious's `friendly-scanner`.
pub const CRACKER_USER_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";
/// svcrack's select timeout (`-t`, seconds): one REGISTER per answer and timeout, about two
/// guesses a second against the lab's Kamailio, a tenth of the access class's 20/s.
pub const CRACKER_INTERVAL: &str = "0.5";
/// The source port of the flood's OPTIONS spoofing the phone: 5060, where phones listen by
/// default (the lab's phone uses 5061 and 5062), so that the lab tells them from the phone's own.
pub const PHONE_SPOOFED_PORT: u16 = 5060;
/// Where the metrics/API of `sipguard run` listen, inside the SBC namespace.
pub const DAEMON_LISTEN: &str = "127.0.0.1:9968";

/// What protects the SBC during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protection {
    /// No sipguard at all: the baseline.
    Off,
    /// sipguard attached in monitor mode: counts what it would drop, drops nothing.
    Monitor,
    /// sipguard enforcing the lab policy.
    Enforce,
}

impl Protection {
    pub fn name(self) -> &'static str {
        match self {
            Protection::Off => "no filter",
            Protection::Monitor => "monitor",
            Protection::Enforce => "enforce",
        }
    }
}

/// How much traffic a run plays. Everything is bounded in packets and seconds.
///
/// The timeline: the carrier and the phone start; 4 s later SIPVicious attacks for
/// `attack_seconds` (plus [`ATTACK_GRACE`]; a tool still running then is stopped, so every
/// protection floods at the same moment); then the spoofed flood, while the carrier and the phone
/// keep calling (unless `flood_after_calls`). Size the calls to outlast the flood.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scale {
    pub carrier_calls: u32,
    pub carrier_rate: u32,
    pub phone_registrations: u32,
    pub phone_calls: u32,
    /// Seconds each SIPVicious tool may run.
    pub attack_seconds: u32,
    /// The spoofed flood (OPTIONS in three streams: from random sources to 5060 and to 5070, and
    /// from the registered phone's address to 5070) stops after `flood_packets` datagrams or
    /// `flood_seconds`, whichever comes first.
    pub flood_packets: u32,
    pub flood_seconds: u32,
    /// Packets per second (trafgen's paced path, one CPU), or 0: as fast as trafgen goes.
    pub flood_rate: u32,
    /// Unpaced trafgen processes, each pinned to its own CPU (0: one per CPU).
    pub flood_senders: u32,
    /// Flood only after the legitimate traffic has ended (what reaches Kamailio is then the
    /// flood alone, and the peers' success does not depend on Kamailio coping with it).
    pub flood_after_calls: bool,
    /// The whole flood from random 198.19.x.y sources to the access port (5070), instead of
    /// the three streams (trunk, access, spoofing the phone): the access gate's test.
    #[serde(default)]
    pub flood_access_only: bool,
}

/// How long the attack phase outlasts `attack_seconds`: svwar and svcrack stop by themselves
/// only after `attack_seconds` without an answer (once banned) and take a few seconds to exit;
/// svcrack never stops while it is answered.
pub const ATTACK_GRACE: Duration = Duration::from_secs(5);

impl Default for Scale {
    /// The demo: the strongest flood trafgen sends here (unpaced, one sender per CPU: 0.4 to 0.9
    /// million packets per second into the SBC, depending on what the SBC does with them) for
    /// 30 s, while the calls go on (they start 21 s earlier and end about when it does).
    fn default() -> Self {
        Scale {
            carrier_calls: 200,
            carrier_rate: 4,
            phone_registrations: 50,
            phone_calls: 45,
            attack_seconds: 12,
            flood_packets: 40_000_000,
            flood_seconds: 30,
            flood_rate: 0,
            flood_senders: 0,
            flood_after_calls: false,
            flood_access_only: false,
        }
    }
}

impl Scale {
    /// The lab test's enforcing run: the demo's flood at full strength, 4 million packets (5 to
    /// 10 s) during the last part of the calls.
    pub fn test() -> Scale {
        Scale {
            carrier_calls: 120,
            phone_registrations: 30,
            phone_calls: 25,
            flood_packets: 4_000_000,
            flood_seconds: 25,
            ..Scale::default()
        }
    }

    /// The same scenario with a gentle flood (3,000 packets per second) after the calls: what
    /// Kamailio can take, so that what reaches it can be counted against sipguard's counters.
    pub fn gentle_flood_after_calls(self) -> Scale {
        Scale {
            flood_packets: 30_000,
            flood_rate: 3_000,
            flood_seconds: 30,
            flood_senders: 1,
            flood_after_calls: true,
            ..self
        }
    }
}

pub struct LabOptions {
    pub protection: Protection,
    pub scale: Scale,
    pub sipguard: PathBuf,
    /// Directory for configs, logs and sipp statistics (kept after the run).
    pub work_dir: PathBuf,
    pub pin_root: PathBuf,
    /// Leave everything running afterwards (`sipguard-lab down` removes it).
    pub keep: bool,
    /// The lab policy as it is (true), or with the SBC's answers ignored ([`lab_policy`]).
    pub feedback: bool,
    /// `sipguard attack-mode on` just before the flood (the lab policy's `[access] unverified =
    /// "under-attack"`): the access gate shut for the flood and the rest of the run.
    pub attack_mode: bool,
    /// A phone that never registered before ([`FRESH_PHONE_IP`]) registers during the flood.
    pub fresh_phone: bool,
}

/// sipp's own account of its calls.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CallStats {
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
}

/// One SIPVicious run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolRun {
    pub tool: String,
    pub source: Ipv4Addr,
    pub target_port: u16,
    /// The tool's last lines of output.
    pub result: String,
}

/// What reached Kamailio, from its script's log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KamailioView {
    pub requests: u64,
    /// Requests by source class (carrier, phone, phone-spoofed, compromised, scanner, enumerator,
    /// cracker, flood, other).
    pub by_source: BTreeMap<String, u64>,
    /// Requests by source class and method ("cracker/REGISTER").
    #[serde(default)]
    pub by_source_method: BTreeMap<String, u64>,
    /// Requests on the trunk port from sources outside the carrier's range.
    pub trunk_from_unknown: u64,
    /// CPU seconds used by all Kamailio processes during the run.
    pub cpu_seconds: f64,
    /// Datagrams the SBC's kernel dropped because a socket's receive buffer was full (Kamailio
    /// not keeping up), over the run: `Udp: RcvbufErrors` of the SBC's namespace.
    #[serde(default)]
    pub udp_receive_buffer_errors: u64,
    /// Request time (Unix seconds, fractional) of each attacker request, by source.
    #[serde(skip)]
    pub attacker_times: BTreeMap<Ipv4Addr, Vec<f64>>,
}

/// A ban as `sipguard bans list --json` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BanView {
    pub source: String,
    pub reason: String,
    pub banned_at_unix: u64,
    pub hits: u64,
}

/// sipguard's account of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SipguardView {
    /// Packets by "zone/reason/outcome".
    pub counters: BTreeMap<String, u64>,
    pub dropped: u64,
    pub would_drop: u64,
    pub bans: Vec<BanView>,
    pub events_emitted: u64,
    pub events_suppressed: u64,
    pub events_lost: u64,
    /// Counter deltas over the flood phase (only the flood hits the SBC from unknown sources
    /// then): trunk not_allowlisted, and access new_source_limited.
    pub flood_trunk_refused: u64,
    pub flood_access_refused: u64,
    /// Access unverified drops over the flood phase: once the daemon's detector (or the
    /// operator) shuts the access gate, the flood is dropped for this reason instead.
    #[serde(default)]
    pub flood_access_unverified: u64,
    /// Counter deltas over the flood phase of what refuses the flood spoofing the phone (and,
    /// once it is banned, the phone): access method_rate_limited, verified_rate_limited,
    /// rate_limited and banned.
    #[serde(default)]
    pub flood_phone_refused: u64,
    /// Attacker requests that reached Kamailio more than a second after their source's ban.
    pub attacker_requests_after_ban: u64,
    /// Drop events (from the daemon's log) whose source is the carrier or the phone (not the
    /// flood spoofing it, which comes from another port). A lower bound of their drops: the
    /// global event budget may have suppressed some.
    #[serde(default)]
    pub legit_drop_events: u64,
    /// Drop events by zone, reason, rule (when the log names one), source class and outcome.
    #[serde(default)]
    pub drop_events: Vec<DropTally>,
}

/// The spoofed flood as trafgen reported it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FloodReport {
    /// Datagrams sent, all ports.
    pub packets: u64,
    /// Seconds the senders took (the slowest one).
    pub seconds: f64,
    /// trafgen processes that sent, each on its own CPU.
    pub senders: u32,
    /// Ended by `flood_seconds` rather than by `flood_packets`.
    pub stopped: bool,
    /// Frames the switch port toward the SBC dropped during the flood (its queue full, or the
    /// SBC's receive ring): sent, but never seen by the SBC.
    pub lost_on_the_way: u64,
    /// Datagrams spoofing the registered phone (a third of `packets`; `flood_sent` has the
    /// others).
    #[serde(default)]
    pub phone_spoofed: u64,
}

impl FloodReport {
    /// Packets per second actually sent.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The phone that first registers during the flood ([`FRESH_PHONE_IP`], account 1003).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FreshPhoneView {
    /// sipp's account of its one registration (401 challenge, then 200 OK).
    pub registration: CallStats,
    /// From its first REGISTER to the 200 OK, retransmissions included (sipp's response time
    /// distance); `None` when it never registered.
    pub seconds_to_register: Option<f64>,
    /// Its REGISTERs (retransmissions included) that reached Kamailio.
    pub registers_reaching_kamailio: u64,
    /// Its first REGISTER, and its 200 OK when it registered, fell within the flood (trafgen's
    /// own sending time, counted back from when trafgen exited).
    #[serde(default)]
    pub during_flood: bool,
    /// A verified source after the run (`None`: no sipguard).
    pub verified_after: Option<bool>,
}

/// The disguised svcrack, as Kamailio and sipguard saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrackerView {
    /// Its REGISTERs (one per guess) that reached Kamailio, in all.
    pub registers: u64,
    /// Why sipguard banned it (`None`: not banned, or no sipguard).
    pub ban_reason: Option<String>,
    /// Its REGISTERs that reached Kamailio until its ban (up to a second after it: the ban's
    /// time is in whole seconds).
    pub registers_until_ban: Option<u64>,
}

/// The registered phone (198.18.2.10), as sipguard saw it, and the flood spoofing it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhoneView {
    /// A verified source (the SBC accepted its REGISTER) just before the flood and after the
    /// run (`None`: no sipguard).
    pub verified_before_flood: Option<bool>,
    pub verified_after: Option<bool>,
    /// 200 OKs to its REGISTERs that sipguard counted (its verified entry after the run).
    pub verified_registrations: u32,
    /// Why its address was banned (`None`: never, or no sipguard).
    pub ban_reason: Option<String>,
    /// Datagrams of the flood spoofing it that reached Kamailio.
    pub spoofed_reaching_kamailio: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRun {
    pub protection: Protection,
    pub scale: Scale,
    pub carrier_calls: CallStats,
    pub phone_registrations: CallStats,
    pub phone_calls: CallStats,
    /// The compromised phone: its registration, its legitimate calls, its fraudulent INVITEs.
    #[serde(default)]
    pub compromised: CompromisedView,
    /// The policy's `[auth_failures]` and `[verified]` as written ([`LabOptions::feedback`]).
    #[serde(default)]
    pub feedback: bool,
    #[serde(default)]
    pub cracker: CrackerView,
    #[serde(default)]
    pub phone: PhoneView,
    /// The access gate was shut (`sipguard attack-mode on`) for the flood.
    #[serde(default)]
    pub attack_mode: bool,
    #[serde(default)]
    pub fresh_phone: Option<FreshPhoneView>,
    pub tools: Vec<ToolRun>,
    /// Flood datagrams from random 198.19.x.y sources sent by trafgen, per destination port.
    pub flood_sent: BTreeMap<u16, u64>,
    pub flood: FloodReport,
    pub kamailio: KamailioView,
    pub sipguard: Option<SipguardView>,
    pub seconds: f64,
    pub work_dir: PathBuf,
    /// How to look at a kept lab.
    pub hints: Vec<String>,
}

/// A process killed on drop, unless released (keep mode).
struct Process {
    name: &'static str,
    child: Option<Child>,
}

impl Process {
    fn wait(mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not finish within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `deadline`; a process still running then is stopped (SIGTERM, then SIGKILL)
    /// and `None` returned.
    fn wait_or_stop(mut self, deadline: Instant) -> Result<Option<std::process::ExitStatus>> {
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait()? {
                self.child.take();
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                drop(self);
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn release(mut self) {
        self.child.take();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so that daemons flush and sipp writes its statistics.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The namespaces of one lab. Deleted on drop unless kept.
pub struct Nodes {
    pub hub: NetNs,
    pub sbc: NetNs,
    pub carrier: NetNs,
    pub phone: NetNs,
    pub compromised: NetNs,
    pub scanner: NetNs,
    pub enumerator: NetNs,
    pub cracker: NetNs,
}

impl Nodes {
    fn build() -> Result<Nodes> {
        let nodes = Nodes {
            hub: NetNs::new("lab-hub")?,
            sbc: NetNs::new("lab-sbc")?,
            carrier: NetNs::new("lab-carrier")?,
            phone: NetNs::new("lab-phone")?,
            compromised: NetNs::new("lab-fraud")?,
            scanner: NetNs::new("lab-scan")?,
            enumerator: NetNs::new("lab-enum")?,
            cracker: NetNs::new("lab-crack")?,
        };
        nodes.hub.ip(&["link", "add", "br0", "type", "bridge"])?;
        nodes.hub.ip(&["link", "set", "br0", "up"])?;
        add_addr(&nodes.hub, "br0", "198.18.255.254/16")?;
        nodes
            .hub
            .ip(&["route", "add", "blackhole", "198.19.0.0/16"])?;
        for (name, node) in nodes.leaves() {
            let port = format!("v-{name}");
            run(
                "ip",
                &[
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    node.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    nodes.hub.name(),
                ],
            )?;
            nodes.hub.ip(&["link", "set", &port, "master", "br0"])?;
            nodes.hub.ip(&["link", "set", &port, "up"])?;
            node.ip(&["link", "set", "eth0", "up"])?;
        }
        // The switch port toward the SBC gets a queue, as a real one has. Without it (veth's
        // default is none), frames from two CPUs flooding at once are dropped when the SBC's XDP
        // receive ring (256 frames) is full: 40 to 630 per million seen here, lost before
        // sipguard could count them. A queue of 1,000 frames still overflowed (150 per million);
        // with 10,000, none was lost in 24 million.
        run(
            "tc",
            &[
                "-n",
                nodes.hub.name(),
                "qdisc",
                "add",
                "dev",
                "v-sbc",
                "root",
                "pfifo",
                "limit",
                "10000",
            ],
        )?;
        add_addr(&nodes.sbc, "eth0", "198.18.0.1/16")?;
        nodes
            .sbc
            .ip(&["route", "add", "default", "via", "198.18.255.254"])?;
        add_addr(&nodes.carrier, "eth0", "198.18.1.10/16")?;
        add_addr(&nodes.carrier, "eth0", "198.18.1.20/16")?;
        add_addr(&nodes.phone, "eth0", "198.18.2.10/16")?;
        add_addr(&nodes.compromised, "eth0", &format!("{COMPROMISED_IP}/16"))?;
        add_addr(&nodes.scanner, "eth0", &format!("{SCANNER_IP}/16"))?;
        add_addr(&nodes.enumerator, "eth0", &format!("{ENUMERATOR_IP}/16"))?;
        add_addr(&nodes.cracker, "eth0", &format!("{CRACKER_IP}/16"))?;
        Ok(nodes)
    }

    fn leaves(&self) -> [(&'static str, &NetNs); 7] {
        [
            ("sbc", &self.sbc),
            ("carrier", &self.carrier),
            ("phone", &self.phone),
            ("fraud", &self.compromised),
            ("scan", &self.scanner),
            ("enum", &self.enumerator),
            ("crack", &self.cracker),
        ]
    }

    pub fn names(&self) -> Vec<String> {
        [
            &self.hub,
            &self.sbc,
            &self.carrier,
            &self.phone,
            &self.compromised,
            &self.scanner,
            &self.enumerator,
            &self.cracker,
        ]
        .iter()
        .map(|ns| ns.name().to_string())
        .collect()
    }
}

/// State left behind by a kept lab, for `sipguard-lab down`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeptLab {
    pub namespaces: Vec<String>,
    pub pin_root: PathBuf,
    pub work_dir: PathBuf,
}

pub const KEPT_STATE: &str = "/run/sipguard-lab/kept.json";

/// The lab policy, or (`feedback` false) the same with the SBC's answers ignored:
/// `[auth_failures] threshold = 0` and `[verified] enabled = false`, sipguard as it was before
/// the egress feedback, to compare with (and `[access] unverified = "open"`: the gate needs
/// verified sources).
pub fn lab_policy(feedback: bool) -> String {
    if feedback {
        return LAB_POLICY.to_string();
    }
    let mut section = String::new();
    let mut text = String::new();
    for line in LAB_POLICY.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            section = trimmed
                .split(']')
                .next()
                .unwrap_or_default()
                .trim_start_matches('[')
                .to_string();
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        let line = match (section.as_str(), key) {
            ("auth_failures", "threshold") => "threshold = 0",
            ("verified", "enabled") => "enabled = false",
            ("access", "unverified") => "unverified = \"open\"",
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn write_assets(dir: &Path, policy: &str) -> Result<()> {
    fs::create_dir_all(dir.join("kamailio-run"))?;
    fs::create_dir_all(dir.join("home"))?;
    for (name, text) in [
        ("kamailio.cfg", KAMAILIO_CFG),
        ("carrier-uac.xml", CARRIER_UAC),
        ("phone-register.xml", PHONE_REGISTER),
        ("phone-call.xml", PHONE_CALL),
        ("uas.xml", UAS),
        ("compromised-call.xml", COMPROMISED_CALL),
        ("policy.toml", policy),
    ] {
        fs::write(dir.join(name), text)?;
    }
    fs::write(dir.join("compromised-register.xml"), compromised_register())?;
    fs::write(dir.join(FRESH_PHONE_REGISTER), fresh_phone_register())?;
    fs::write(dir.join(DISGUISED_SVCRACK_FILE), DISGUISED_SVCRACK)?;
    fs::write(dir.join(fraud::NUMBERS_FILE), fraud::numbers_file())?;
    Ok(())
}

/// Runs `program args` inside `ns`, output to files in the work dir.
fn spawn(
    ns: &NetNs,
    name: &'static str,
    dir: &Path,
    program: &str,
    args: &[String],
) -> Result<Process> {
    let stdout = fs::File::create(dir.join(format!("{name}.out")))?;
    let stderr = fs::File::create(dir.join(format!("{name}.err")))?;
    let child = ns
        .command(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("start {program}"))?;
    Ok(Process {
        name,
        child: Some(child),
    })
}

/// The remote phone's registration, as account 1002 with its (leaked) password.
fn compromised_register() -> String {
    PHONE_REGISTER
        .replace("password=lab-secret]", "password=lab-secret-1002]")
        .replace("1001", "1002")
}

const FRESH_PHONE_REGISTER: &str = "fresh-phone-register.xml";

/// The fresh phone's registration, as account 1003, timed by sipp from its first REGISTER to the
/// 200 OK (response time distance 1, in `fresh-phone-register_<pid>_rtt.csv`).
fn fresh_phone_register() -> String {
    PHONE_REGISTER
        .replacen(
            "<send retrans=\"500\">",
            "<send retrans=\"500\" start_rtd=\"1\">",
            1,
        )
        .replace(
            "<recv response=\"200\"/>",
            "<recv response=\"200\" rtd=\"1\"/>",
        )
        .replace("password=lab-secret]", "password=lab-secret-1003]")
        .replace("1001", "1003")
}

/// The fresh phone's response time (seconds) from sipp's `-trace_rtt` file in `dir`.
fn fresh_phone_seconds(dir: &Path) -> Option<f64> {
    let prefix = FRESH_PHONE_REGISTER.trim_end_matches(".xml");
    let file = fs::read_dir(dir).ok()?.flatten().find(|entry| {
        let name = entry.file_name().to_string_lossy().to_string();
        name.starts_with(prefix) && name.ends_with("_rtt.csv")
    })?;
    let text = fs::read_to_string(file.path()).ok()?;
    // "Date_ms;response_time_ms;rtd_no", then one line per response time measured.
    text.lines()
        .skip(1)
        .filter_map(|line| line.split(';').nth(1)?.trim().parse::<f64>().ok())
        .next()
        .map(|ms| ms / 1000.0)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(std::string::ToString::to_string).collect()
}

/// A sipp client run: scenario, target, rate, count.
struct SippClient<'a> {
    name: &'static str,
    scenario: &'a str,
    target: &'a str,
    local: Ipv4Addr,
    port: u16,
    rate: u32,
    calls: u32,
    /// More sipp options (an injection file, a log).
    extra: Vec<String>,
}

impl SippClient<'_> {
    fn start(&self, ns: &NetNs, dir: &Path) -> Result<Process> {
        let name = self.name;
        let mut args = vec![
            "-sf".to_string(),
            self.scenario.to_string(),
            "-s".into(),
            "1000".into(),
            self.target.to_string(),
            "-i".into(),
            self.local.to_string(),
            "-p".into(),
            self.port.to_string(),
            "-r".into(),
            self.rate.to_string(),
            "-m".into(),
            self.calls.to_string(),
            // Offer every call at the rate, however many are pending: by default sipp holds new
            // calls back while 3 x rate x duration are open, and places them after a flood.
            "-l".into(),
            self.calls.to_string(),
            "-d".into(),
            "1000".into(),
            "-nostdin".into(),
            "-trace_stat".into(),
            "-fd".into(),
            "1".into(),
            "-stf".into(),
            format!("{name}.csv"),
            "-trace_err".into(),
            "-error_file".into(),
            format!("{name}.errors"),
            // A failed call is failed after 8 s, not after sipp's default 64 x T1.
            "-recv_timeout".into(),
            "8000".into(),
        ];
        args.extend(self.extra.iter().cloned());
        spawn(ns, name, dir, "sipp", &args)
    }
}

/// One SIPVicious tool to run from an attacker's namespace.
struct AttackTool<'a> {
    name: &'static str,
    ns: &'a NetNs,
    program: &'static str,
    source: Ipv4Addr,
    port: u16,
    args: Vec<String>,
}

/// sipp's final statistics (its CSV: header line, then one line per period).
fn call_stats(path: &Path) -> CallStats {
    let Ok(text) = fs::read_to_string(path) else {
        return CallStats::default();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return CallStats::default();
    };
    let Some(last) = lines.next_back() else {
        return CallStats::default();
    };
    let columns: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let field = |name: &str| -> u64 {
        columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    CallStats {
        created: field("TotalCallCreated"),
        successful: field("SuccessfulCall(C)"),
        failed: field("FailedCall(C)"),
    }
}

/// The flood's streams, in the order each trafgen sender sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloodStream {
    /// From random 198.19.x.y sources to the trunk port.
    Trunk,
    /// From random 198.19.x.y sources to the access port.
    Access,
    /// From the registered phone's address ([`PHONE_SPOOFED_PORT`]) to the access port.
    PhoneSpoofed,
}

const FLOOD_STREAMS: [FloodStream; 3] = [
    FloodStream::Trunk,
    FloodStream::Access,
    FloodStream::PhoneSpoofed,
];

/// The flood's streams under `scale`: all three, or (`flood_access_only`) random sources to the
/// access port alone.
fn flood_streams(scale: &Scale) -> &'static [FloodStream] {
    if scale.flood_access_only {
        &[FloodStream::Access]
    } else {
        &FLOOD_STREAMS
    }
}

/// trafgen configuration: OPTIONS datagrams from random 198.19.x.y sources to the trunk and to
/// the access port, and from the phone's address to the access port, in turn, to the SBC's MAC
/// (`streams`: which of them).
/// Random source ports are 1024 and up: Kamailio drops a datagram from port 0 unlogged, which the
/// lab would count as lost. The spoofed phone's Via names the phone, so Kamailio answers it there
/// (nothing listens on that port: its answers end in a port unreachable).
fn flood_config(sbc_mac: [u8; 6], streams: &[FloodStream]) -> String {
    let mac: Vec<String> = sbc_mac.iter().map(|b| format!("0x{b:02x}")).collect();
    let [p1, p2, p3, p4] = PHONE_IP.octets();
    streams
        .iter()
        .map(|stream| {
            let (via, user, port, source, source_port) = match stream {
                FloodStream::Trunk | FloodStream::Access => (
                    "198.19.0.1:5060".to_string(),
                    "flood",
                    if *stream == FloodStream::Trunk { 5060u16 } else { 5070 },
                    "198, 19, drnd(2)".to_string(),
                    "dinc(4, 255), drnd(1)".to_string(),
                ),
                FloodStream::PhoneSpoofed => (
                    format!("{PHONE_IP}:{PHONE_SPOOFED_PORT}"),
                    "1001",
                    5070,
                    format!("{p1}, {p2}, {p3}, {p4}"),
                    format!("c16({PHONE_SPOOFED_PORT})"),
                ),
            };
            let payload = format!(
                "OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-flood\r\n\
                 From: <sip:{user}@{via}>;tag=1\r\nTo: <sip:sbc@198.18.0.1>\r\nCall-ID: {user}-flood@lab\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let udp_len = 8 + payload.len();
            let total = 20 + udp_len;
            let body: Vec<String> = payload.bytes().map(|b| b.to_string()).collect();
            format!(
                "{{\n  {}, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, c16(0x0800),\n  \
                 0x45, 0x00, c16({total}), drnd(2), 0x00, 0x00, 64, 17, csumip(14, 33),\n  \
                 {source}, 198, 18, 0, 1,\n  {source_port}, c16({port}), c16({udp_len}), 0x00, 0x00,\n  {}\n}}\n",
                mac.join(", "),
                body.join(", ")
            )
        })
        .collect()
}

/// Plays the spoofed flood from `ns` with trafgen under timeout(1): it stops by itself after
/// `flood_packets` or `flood_seconds`, whichever comes first, also if this process dies
/// meanwhile (timeout signals trafgen's whole process group). Unpaced, trafgen takes its fast
/// path (a TX ring) with one process per sender, each pinned to its own CPU; paced, it sends
/// from one CPU. Returns the datagrams sent from random sources per destination port, from
/// trafgen's own count (those spoofing the phone are in the report).
fn run_flood(ns: &NetNs, dir: &Path, scale: &Scale) -> Result<(BTreeMap<u16, u64>, FloodReport)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let senders = match (scale.flood_rate, scale.flood_senders) {
        (1.., _) => 1,
        (0, 0) => cpus,
        (0, n) => n.min(cpus),
    };
    let mut args = strings(&[
        "--signal=TERM",
        "--kill-after=5",
        &scale.flood_seconds.to_string(),
        "trafgen",
        "--dev",
        "eth0",
        "--conf",
        "flood.cfg",
        "--num",
        &scale.flood_packets.to_string(),
        "--cpus",
        &senders.to_string(),
        "--no-sock-mem",
        "--notouch-irq",
    ]);
    if scale.flood_rate > 0 {
        args.extend(["--rate".to_string(), format!("{}pps", scale.flood_rate)]);
    }
    let flood = spawn(ns, "trafgen", dir, "timeout", &args)?;
    let limit = Duration::from_secs(u64::from(scale.flood_seconds) + 15);
    let status = flood.wait(limit)?;
    // timeout(1) exits with 124 when it had to stop trafgen.
    let stopped = status.code() == Some(124);
    if !status.success() && !stopped {
        bail!(
            "trafgen failed ({status}); see {}",
            dir.join("trafgen.err").display()
        );
    }
    let output = fs::read_to_string(dir.join("trafgen.out"))?;
    let per_sender = trafgen_senders(&output);
    if per_sender.is_empty() {
        bail!(
            "no packet counts in trafgen's output; see {}",
            dir.join("trafgen.out").display()
        );
    }
    // Each sender sends the configuration's packets in turn, in the streams' order.
    let mut sent = BTreeMap::from([(5060u16, 0u64), (5070, 0)]);
    let mut phone_spoofed = 0;
    let streams = flood_streams(scale);
    let count_streams = streams.len() as u64;
    for (_, packets) in &per_sender {
        for (i, stream) in streams.iter().enumerate() {
            let count = packets.saturating_sub(i as u64).div_ceil(count_streams);
            match stream {
                FloodStream::Trunk => *sent.entry(5060).or_default() += count,
                FloodStream::Access => *sent.entry(5070).or_default() += count,
                FloodStream::PhoneSpoofed => phone_spoofed += count,
            }
        }
    }
    let report = FloodReport {
        packets: per_sender.iter().map(|(_, p)| p).sum(),
        seconds: per_sender.iter().map(|(s, _)| *s).fold(0.0, f64::max),
        senders: per_sender.len() as u32,
        stopped,
        lost_on_the_way: 0,
        phone_spoofed,
    };
    Ok((sent, report))
}

/// Frames dropped so far by the hub's port toward the SBC: by the veth (the SBC's receive ring or
/// backlog full) and by the port's queue.
fn port_drops(hub: &NetNs) -> Result<u64> {
    let veth: u64 = hub
        .exec("cat", &["/sys/class/net/v-sbc/statistics/tx_dropped"])?
        .trim()
        .parse()
        .context("v-sbc tx_dropped")?;
    let qdisc = run(
        "tc",
        &["-n", hub.name(), "-s", "qdisc", "show", "dev", "v-sbc"],
    )?;
    let queue: u64 = qdisc
        .split("(dropped ")
        .skip(1)
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<u64>().ok())
        .sum();
    Ok(veth + queue)
}

/// trafgen's closing lines per sender, `<s> sec, <us> usec on CPU<n> (<packets> packets)`: the
/// seconds and packets of each.
fn trafgen_senders(output: &str) -> Vec<(f64, u64)> {
    output
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (time, rest) = line.split_once(" usec on CPU")?;
            let (secs, usecs) = time.trim().split_once(" sec, ")?;
            let packets = rest.split_once('(')?.1.strip_suffix(" packets)")?;
            let seconds =
                secs.trim().parse::<f64>().ok()? + usecs.trim().parse::<f64>().ok()? / 1e6;
            Some((seconds, packets.parse().ok()?))
        })
        .collect()
}

/// The class of a source address and port: the phone's address from [`PHONE_SPOOFED_PORT`] is
/// the flood spoofing it.
fn source_class(ip: Ipv4Addr, port: u16) -> &'static str {
    match ip {
        ip if ip == CARRIER_UAC_IP || ip == CARRIER_UAS_IP => "carrier",
        ip if ip == PHONE_IP && port == PHONE_SPOOFED_PORT => "phone-spoofed",
        ip if ip == FRESH_PHONE_IP => "fresh-phone",
        ip if ip == PHONE_IP => "phone",
        ip if ip == COMPROMISED_IP => "compromised",
        ip if ip == SCANNER_IP => "scanner",
        ip if ip == ENUMERATOR_IP => "enumerator",
        ip if ip == CRACKER_IP => "cracker",
        ip if ip.octets()[..2] == [198, 19] => "flood",
        ip if ip == SBC => "sbc",
        _ => "other",
    }
}

/// Parses `SG-REQ <time> <method> <source ip> <source port> <local port>` lines.
fn kamailio_view(log: &Path) -> KamailioView {
    let mut view = KamailioView::default();
    let text = fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let Some(rest) = line.split("SG-REQ ").nth(1) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [time, method, source, sport, local_port] = fields[..] else {
            continue;
        };
        let Ok(source) = source.parse::<Ipv4Addr>() else {
            continue;
        };
        view.requests += 1;
        let class = source_class(source, sport.parse().unwrap_or(0));
        *view.by_source.entry(class.to_string()).or_default() += 1;
        *view
            .by_source_method
            .entry(format!("{class}/{method}"))
            .or_default() += 1;
        if local_port == "5060" && class != "carrier" && class != "sbc" {
            view.trunk_from_unknown += 1;
        }
        if matches!(class, "scanner" | "enumerator" | "cracker")
            && let Ok(time) = time.parse::<f64>()
        {
            view.attacker_times.entry(source).or_default().push(time);
        }
    }
    view
}

/// `Udp: RcvbufErrors` of `ns` (its /proc/net/snmp).
fn udp_receive_buffer_errors(ns: &NetNs) -> u64 {
    let snmp = ns.exec("cat", &["/proc/net/snmp"]).unwrap_or_default();
    let mut udp = snmp.lines().filter(|line| line.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of every Kamailio process in the SBC namespace.
fn kamailio_cpu(sbc: &NetNs) -> f64 {
    let pids = run("ip", &["netns", "pids", sbc.name()]).unwrap_or_default();
    // SAFETY: sysconf without side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.split_whitespace()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "kamailio")
        })
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
            let after = stat.rsplit(')').next().unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (utime + stime) / ticks
        })
        .sum()
}

fn counters_by_reason(stats: &Stats) -> BTreeMap<String, u64> {
    stats
        .counters
        .iter()
        .map(|row| {
            (
                format!("{}/{}/{}", row.zone, row.reason, row.outcome.name()),
                row.packets,
            )
        })
        .collect()
}

fn both(stats: &Stats, zone: Zone, reason: Reason) -> u64 {
    stats.get(zone, reason, false).packets + stats.get(zone, reason, true).packets
}

/// Access-zone drops of the kinds that refuse the flood spoofing the phone.
fn phone_refusals(stats: &Stats) -> u64 {
    [
        Reason::MethodRateLimited,
        Reason::VerifiedRateLimited,
        Reason::RateLimited,
        Reason::Banned,
    ]
    .into_iter()
    .map(|reason| both(stats, Zone::Access, reason))
    .sum()
}

/// The phone's verified entry, when one is in force.
fn phone_verified(target: &Target) -> Result<Option<VerifiedSource>> {
    verified_entry(target, PHONE_IP)
}

/// The verified entry of `ip`, when one is in force.
fn verified_entry(target: &Target, ip: Ipv4Addr) -> Result<Option<VerifiedSource>> {
    let state = State::open(target)?;
    let now = sipguard::time::boot_now_ns();
    Ok(state
        .verified_sources()?
        .into_iter()
        .find(|(key, verified)| source_addr(key) == IpAddr::V4(ip) && verified.expires_at_ns > now)
        .map(|(_, verified)| verified))
}

/// Plays the scenario once. Cleans up everything (unless `keep`), also on failure.
pub fn run_lab(options: &LabOptions) -> Result<LabRun> {
    crate::require_root();
    let started = Instant::now();
    let dir = &options.work_dir;
    write_assets(dir, &lab_policy(options.feedback))?;
    let nodes = Nodes::build()?;
    if options.fresh_phone {
        add_addr(&nodes.phone, "eth0", &format!("{FRESH_PHONE_IP}/16"))?;
    }
    let sbc_mac = mac_of(&nodes.sbc, "eth0")?;
    let target =
        Target::new("eth0", Some(nodes.sbc.name()), &options.pin_root).expect("valid names");
    let mut background: Vec<Process> = Vec::new();

    // The SBC: Kamailio, the PBX behind it, and sipguard in front of it.
    let kamailio_run = dir.join("kamailio-run");
    background.push(spawn(
        &nodes.sbc,
        "kamailio",
        dir,
        "kamailio",
        &strings(&[
            "-f",
            &dir.join("kamailio.cfg").to_string_lossy(),
            "-DD",
            "-E",
            "-m",
            "128",
            "-P",
            &kamailio_run.join("kamailio.pid").to_string_lossy(),
            "-Y",
            &kamailio_run.to_string_lossy(),
        ]),
    )?);
    let kamailio_log = dir.join("kamailio.err");
    if !wait_until(Duration::from_secs(15), || {
        fs::read_to_string(&kamailio_log).is_ok_and(|l| l.contains("SO_RCVBUF is finally"))
    }) {
        bail!("Kamailio did not start; see {}", kamailio_log.display());
    }
    if options.protection != Protection::Off {
        let mode = if options.protection == Protection::Monitor {
            "monitor"
        } else {
            "enforce"
        };
        let pin_root = options.pin_root.to_string_lossy().to_string();
        let mut daemon = Command::new(&options.sipguard);
        daemon
            // The run's journal stays with its evidence, not in the host's /var/lib.
            .env("SIPGUARD_JOURNAL_DIR", dir.join("journal"))
            .args(["--pin-root", &pin_root, "--netns", nodes.sbc.name(), "run"])
            .args(["--iface", "eth0", "--xdp-mode", "native", "--mode", mode])
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--events")
            .arg(dir.join("events.jsonl"))
            .args(["--listen", DAEMON_LISTEN])
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("sipguard.out"))?)
            .stderr(fs::File::create(dir.join("sipguard.err"))?);
        background.push(Process {
            name: "sipguard run",
            child: Some(daemon.spawn().context("start sipguard run")?),
        });
        if !wait_until(Duration::from_secs(20), || State::open(&target).is_ok()) {
            bail!(
                "sipguard did not attach; see {}",
                dir.join("sipguard.err").display()
            );
        }
    }
    background.push(spawn(
        &nodes.sbc,
        "pbx",
        dir,
        "sipp",
        &strings(&[
            "-sf",
            "uas.xml",
            "-i",
            "198.18.0.1",
            "-p",
            "5090",
            "-nostdin",
        ]),
    )?);
    background.push(spawn(
        &nodes.carrier,
        "carrier-uas",
        dir,
        "sipp",
        &strings(&[
            "-sf",
            "uas.xml",
            "-i",
            "198.18.1.20",
            "-p",
            "5060",
            "-nostdin",
        ]),
    )?);
    std::thread::sleep(Duration::from_millis(500));

    // Legitimate traffic for the whole run.
    let scale = &options.scale;
    let carrier = SippClient {
        name: "carrier-calls",
        scenario: "carrier-uac.xml",
        target: "198.18.0.1:5060",
        local: CARRIER_UAC_IP,
        port: 5060,
        rate: scale.carrier_rate,
        calls: scale.carrier_calls,
        extra: Vec::new(),
    }
    .start(&nodes.carrier, dir)?;
    let registrations = SippClient {
        name: "phone-registrations",
        scenario: "phone-register.xml",
        target: "198.18.0.1:5070",
        local: PHONE_IP,
        port: 5061,
        rate: 1,
        calls: scale.phone_registrations,
        extra: Vec::new(),
    }
    .start(&nodes.phone, dir)?;
    let calls = SippClient {
        name: "phone-calls",
        scenario: "phone-call.xml",
        target: "198.18.0.1:5070",
        local: PHONE_IP,
        port: 5062,
        rate: 1,
        calls: scale.phone_calls,
        extra: Vec::new(),
    }
    .start(&nodes.phone, dir)?;
    // The compromised phone registers once, then places its calls (legitimate and fraudulent,
    // interleaved, 15 s at 2/s).
    let compromised_registration = SippClient {
        name: "compromised-registration",
        scenario: "compromised-register.xml",
        target: "198.18.0.1:5070",
        local: COMPROMISED_IP,
        port: 5061,
        rate: 1,
        calls: 1,
        extra: Vec::new(),
    }
    .start(&nodes.compromised, dir)?;
    let compromised_calls = SippClient {
        name: "compromised-calls",
        scenario: "compromised-call.xml",
        target: "198.18.0.1:5070",
        local: COMPROMISED_IP,
        port: 5062,
        rate: fraud::CALL_RATE,
        calls: fraud::plan().len() as u32,
        extra: strings(&[
            "-inf",
            fraud::NUMBERS_FILE,
            "-trace_logs",
            "-log_file",
            fraud::CALLS_LOG,
        ]),
    };
    // Legitimate traffic ends by itself (bounded call counts); the flood may run meanwhile.
    let call_limit = Duration::from_secs(
        4 + u64::from(scale.attack_seconds)
            + ATTACK_GRACE.as_secs()
            + u64::from(scale.flood_seconds)
            + u64::from(
                (scale.carrier_calls / scale.carrier_rate.max(1))
                    .max(scale.phone_registrations)
                    .max(scale.phone_calls),
            )
            + 60,
    );
    let mut legitimate: Vec<JoinHandle<Result<std::process::ExitStatus>>> =
        [carrier, registrations, calls]
            .into_iter()
            .map(|p| std::thread::spawn(move || p.wait(call_limit)))
            .collect();
    // Registered (or not: it calls anyway, its calls authenticate by themselves), the
    // compromised phone calls. Started here, so that a failure to start cleans up as usual.
    let registered = compromised_registration.wait(Duration::from_secs(20));
    if let Err(error) = &registered {
        eprintln!("compromised phone registration: {error:#}");
    }
    let compromised = compromised_calls.start(&nodes.compromised, dir)?;
    legitimate.push(std::thread::spawn(move || compromised.wait(call_limit)));
    let wait_for_legitimate = |handles: Vec<JoinHandle<_>>| {
        for handle in handles {
            let _ = handle.join();
        }
    };

    // The attack: SIPVicious against both zones, then a spoofed-source flood.
    std::thread::sleep(Duration::from_secs(4));
    let seconds = scale.attack_seconds.to_string();
    let tool = |name, ns, program, source, port, args: &[&str]| AttackTool {
        name,
        ns,
        program,
        source,
        port,
        args: strings(args),
    };
    let tools = [
        tool(
            "svmap",
            &nodes.scanner,
            "sipvicious_svmap",
            SCANNER_IP,
            5060,
            &["198.18.0.1", "-p5060,5070"],
        ),
        tool(
            "svwar-trunk",
            &nodes.scanner,
            "sipvicious_svwar",
            SCANNER_IP,
            5060,
            &[
                "198.18.0.1",
                "-p",
                "5060",
                "-e",
                "100-999",
                "-m",
                "INVITE",
                "--force",
                "--maximumtime",
                &seconds,
            ],
        ),
        tool(
            "svwar-access",
            &nodes.enumerator,
            "sipvicious_svwar",
            ENUMERATOR_IP,
            5070,
            &[
                "198.18.0.1",
                "-p",
                "5070",
                "-e",
                "100-999",
                "-m",
                "REGISTER",
                "--force",
                "--maximumtime",
                &seconds,
            ],
        ),
        tool(
            "svcrack-access",
            &nodes.cracker,
            "python3",
            CRACKER_IP,
            5070,
            &[
                DISGUISED_SVCRACK_FILE,
                CRACKER_USER_AGENT,
                "198.18.0.1",
                "-p",
                "5070",
                "-u",
                "1001",
                "-r",
                "1000-9999",
                "-t",
                CRACKER_INTERVAL,
                "--maximumtime",
                &seconds,
            ],
        ),
    ];
    let mut attackers: Vec<(&'static str, Ipv4Addr, u16, Process)> = Vec::new();
    // The attack phase has the same length under every protection: without a filter svcrack
    // keeps cracking (it is answered), and it is stopped at the end of the phase.
    let attack_end =
        Instant::now() + Duration::from_secs(scale.attack_seconds.into()) + ATTACK_GRACE;
    for tool in tools {
        let process = spawn(tool.ns, tool.name, dir, tool.program, &tool.args)?;
        attackers.push((tool.name, tool.source, tool.port, process));
    }
    let mut tool_runs = Vec::new();
    for (name, source, port, process) in attackers {
        let status = process.wait_or_stop(attack_end);
        let output = fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default()
            + &fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
        let tail: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(3)
            .collect();
        tool_runs.push(ToolRun {
            tool: name.to_string(),
            source,
            target_port: port,
            result: match status {
                Ok(status) => {
                    let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
                    if status.is_some() {
                        tail
                    } else {
                        format!("(stopped at the end of the attack phase) {tail}")
                    }
                }
                Err(error) => error.to_string(),
            },
        });
    }
    std::thread::sleep(attack_end.saturating_duration_since(Instant::now()));
    if scale.flood_after_calls {
        wait_for_legitimate(std::mem::take(&mut legitimate));
    }

    let before_flood = (options.protection != Protection::Off)
        .then(|| State::open(&target).and_then(|s| Stats::read(&s)))
        .transpose()?;
    let phone_verified_before_flood = (options.protection != Protection::Off)
        .then(|| phone_verified(&target))
        .transpose()?
        .map(|verified| verified.is_some());
    fs::write(
        dir.join("flood.cfg"),
        flood_config(sbc_mac, flood_streams(scale)),
    )?;
    if options.attack_mode {
        // The operator's reaction to the attack: the access gate shut, through the CLI.
        let output = Command::new(&options.sipguard)
            .env("SIPGUARD_JOURNAL_DIR", dir.join("journal"))
            .arg("--pin-root")
            .arg(&options.pin_root)
            .args([
                "--netns",
                nodes.sbc.name(),
                "attack-mode",
                "--iface",
                "eth0",
                "on",
            ])
            .output()?;
        fs::write(dir.join("attack-mode.out"), &output.stdout)?;
        if !output.status.success() {
            bail!(
                "sipguard attack-mode on failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let port_drops_before = port_drops(&nodes.hub)?;
    // The fresh phone registers while the flood runs (and the gate, if shut, is shut).
    let (flood_result, fresh_result) = std::thread::scope(|scope| {
        let fresh = options.fresh_phone.then(|| {
            scope.spawn(|| -> Result<Instant> {
                std::thread::sleep(FRESH_PHONE_DELAY);
                let started = Instant::now();
                let timeout = FRESH_PHONE_TIMEOUT_MS.to_string();
                let process = SippClient {
                    name: "fresh-phone",
                    scenario: FRESH_PHONE_REGISTER,
                    target: "198.18.0.1:5070",
                    local: FRESH_PHONE_IP,
                    port: 5063,
                    rate: 1,
                    calls: 1,
                    extra: strings(&[
                        "-trace_rtt",
                        "-rtt_freq",
                        "1",
                        "-recv_timeout",
                        &timeout,
                        "-max_non_invite_retrans",
                        "20",
                    ]),
                }
                .start(&nodes.phone, dir)?;
                process.wait(Duration::from_millis(
                    u64::from(FRESH_PHONE_TIMEOUT_MS) + 10_000,
                ))?;
                Ok(started)
            })
        });
        let flood = run_flood(&nodes.scanner, dir, scale);
        let flood_end = Instant::now();
        (
            flood.map(|flood| (flood, flood_end)),
            fresh.map(std::thread::ScopedJoinHandle::join),
        )
    });
    let ((flood_sent, mut flood), flood_end) = flood_result?;
    let flood_window = flood_end
        .checked_sub(Duration::from_secs_f64(flood.seconds))
        .map(|start| start..=flood_end);
    let fresh_phone_started = match fresh_result {
        Some(Ok(Ok(started))) => Some(started),
        Some(Ok(Err(error))) => {
            eprintln!("fresh phone: {error:#}");
            None
        }
        Some(Err(_)) => bail!("the fresh phone's thread panicked"),
        None => None,
    };
    flood.lost_on_the_way = port_drops(&nodes.hub)? - port_drops_before;
    std::thread::sleep(Duration::from_millis(500));
    let after_flood = (options.protection != Protection::Off)
        .then(|| State::open(&target).and_then(|s| Stats::read(&s)))
        .transpose()?;

    wait_for_legitimate(legitimate);
    std::thread::sleep(Duration::from_millis(500));

    let mut kamailio = kamailio_view(&kamailio_log);
    kamailio.cpu_seconds = kamailio_cpu(&nodes.sbc);
    kamailio.udp_receive_buffer_errors = udp_receive_buffer_errors(&nodes.sbc);
    let sipguard = match (&before_flood, &after_flood) {
        (Some(before), Some(after)) => {
            let drop_events = fraud::drop_tallies(&dir.join("events.jsonl"), source_class);
            let legit_drop_events = drop_events
                .iter()
                .filter(|t| matches!(t.source.as_str(), "carrier" | "phone"))
                .map(|t| t.events)
                .sum();
            let state = State::open(&target)?;
            let stats = Stats::read(&state)?;
            let bans = Command::new(&options.sipguard)
                .env("SIPGUARD_JOURNAL_DIR", dir.join("journal"))
                .arg("--pin-root")
                .arg(&options.pin_root)
                .args([
                    "--netns",
                    nodes.sbc.name(),
                    "bans",
                    "list",
                    "--iface",
                    "eth0",
                    "--json",
                ])
                .output()?;
            let bans: Vec<BanView> = serde_json::from_slice(&bans.stdout).unwrap_or_default();
            let attacker_requests_after_ban = bans
                .iter()
                .filter_map(|ban| {
                    let ip: Ipv4Addr = ban.source.parse().ok()?;
                    let times = kamailio.attacker_times.get(&ip)?;
                    Some(
                        times
                            .iter()
                            .filter(|t| **t > ban.banned_at_unix as f64 + 1.0)
                            .count() as u64,
                    )
                })
                .sum();
            Some(SipguardView {
                counters: counters_by_reason(&stats),
                dropped: stats.dropped.packets,
                would_drop: stats.would_drop.packets,
                bans,
                events_emitted: stats.events.emitted,
                events_suppressed: stats.events.suppressed,
                events_lost: stats.events.lost,
                flood_trunk_refused: both(after, Zone::Trunk, Reason::NotAllowlisted)
                    - both(before, Zone::Trunk, Reason::NotAllowlisted),
                flood_access_refused: both(after, Zone::Access, Reason::NewSourceLimited)
                    - both(before, Zone::Access, Reason::NewSourceLimited),
                flood_access_unverified: both(after, Zone::Access, Reason::Unverified)
                    - both(before, Zone::Access, Reason::Unverified),
                flood_phone_refused: phone_refusals(after) - phone_refusals(before),
                attacker_requests_after_ban,
                legit_drop_events,
                drop_events,
            })
        }
        _ => None,
    };

    let phone_verified_after = (options.protection != Protection::Off)
        .then(|| phone_verified(&target))
        .transpose()?;
    let fresh_phone = options
        .fresh_phone
        .then(|| -> Result<FreshPhoneView> {
            let seconds_to_register = fresh_phone_seconds(dir);
            let within = |at: Instant| flood_window.as_ref().is_some_and(|w| w.contains(&at));
            Ok(FreshPhoneView {
                registration: call_stats(&dir.join("fresh-phone.csv")),
                seconds_to_register,
                during_flood: fresh_phone_started.is_some_and(|started| {
                    within(started)
                        && seconds_to_register
                            .is_none_or(|s| within(started + Duration::from_secs_f64(s)))
                }),
                registers_reaching_kamailio: kamailio
                    .by_source_method
                    .get("fresh-phone/REGISTER")
                    .copied()
                    .unwrap_or(0),
                verified_after: (options.protection != Protection::Off)
                    .then(|| verified_entry(&target, FRESH_PHONE_IP))
                    .transpose()?
                    .map(|verified| verified.is_some()),
            })
        })
        .transpose()?;
    let ban_of = |ip: Ipv4Addr| {
        sipguard.as_ref().and_then(|s| {
            s.bans
                .iter()
                .find(|b| b.source.parse::<Ipv4Addr>() == Ok(ip))
        })
    };
    let cracker_ban = ban_of(CRACKER_IP);
    let cracker = CrackerView {
        registers: kamailio
            .by_source_method
            .get("cracker/REGISTER")
            .copied()
            .unwrap_or(0),
        ban_reason: cracker_ban.map(|b| b.reason.clone()),
        registers_until_ban: cracker_ban.map(|ban| {
            kamailio.attacker_times.get(&CRACKER_IP).map_or(0, |times| {
                times
                    .iter()
                    .filter(|t| **t <= ban.banned_at_unix as f64 + 1.0)
                    .count() as u64
            })
        }),
    };
    let phone = PhoneView {
        verified_before_flood: phone_verified_before_flood,
        verified_after: phone_verified_after.as_ref().map(Option::is_some),
        verified_registrations: phone_verified_after
            .flatten()
            .map_or(0, |verified| verified.registrations),
        ban_reason: ban_of(PHONE_IP).map(|b| b.reason.clone()),
        spoofed_reaching_kamailio: kamailio
            .by_source
            .get("phone-spoofed")
            .copied()
            .unwrap_or(0),
    };

    let mut hints = Vec::new();
    if options.keep {
        let sbc = nodes.sbc.name();
        let root = options.pin_root.display();
        hints = vec![
            format!("sipguard --netns {sbc} --pin-root {root} top"),
            format!("sipguard --netns {sbc} --pin-root {root} events --follow"),
            format!("sipguard --netns {sbc} --pin-root {root} bans list"),
            format!("ip netns exec {sbc} curl -s http://{DAEMON_LISTEN}/metrics"),
            format!(
                "ip netns exec {sbc} curl -s 'http://127.0.0.1:9090/api/v1/query?query=sipguard_packets_total'   (Prometheus)"
            ),
            format!("tail -f {}", dir.join("events.jsonl").display()),
            "sipguard-lab down   (or: cargo xtask demo-down)".to_string(),
        ];
        if options.protection != Protection::Off {
            let config = dir.join("prometheus.yml");
            fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: sipguard\n    static_configs:\n      - targets: ['{DAEMON_LISTEN}']\n"
                ),
            )?;
            background.push(spawn(
                &nodes.sbc,
                "prometheus",
                dir,
                "prometheus",
                &[
                    format!("--config.file={}", config.display()),
                    format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                    "--web.listen-address=127.0.0.1:9090".to_string(),
                ],
            )?);
        }
        fs::create_dir_all("/run/sipguard-lab")?;
        fs::write(
            KEPT_STATE,
            serde_json::to_string_pretty(&KeptLab {
                namespaces: nodes.names(),
                pin_root: options.pin_root.clone(),
                work_dir: dir.clone(),
            })?,
        )?;
        for process in background {
            process.release();
        }
        std::mem::forget(nodes);
    } else {
        drop(background);
        if options.protection != Protection::Off {
            let _ = sipguard::dataplane::detach(&target, false);
        }
        drop(nodes);
    }

    Ok(LabRun {
        protection: options.protection,
        scale: options.scale.clone(),
        carrier_calls: call_stats(&dir.join("carrier-calls.csv")),
        phone_registrations: call_stats(&dir.join("phone-registrations.csv")),
        phone_calls: call_stats(&dir.join("phone-calls.csv")),
        compromised: fraud::compromised_view(
            &kamailio_log,
            &dir.join(fraud::CALLS_LOG),
            call_stats(&dir.join("compromised-registration.csv")),
            call_stats(&dir.join("compromised-calls.csv")),
        ),
        feedback: options.feedback,
        cracker,
        phone,
        attack_mode: options.attack_mode,
        fresh_phone,
        tools: tool_runs,
        flood_sent,
        flood,
        kamailio,
        sipguard,
        seconds: started.elapsed().as_secs_f64(),
        work_dir: dir.clone(),
        hints,
    })
}

/// Removes a kept lab: every process in its namespaces, its pins, its namespaces.
pub fn tear_down() -> Result<bool> {
    let Ok(text) = fs::read_to_string(KEPT_STATE) else {
        return Ok(false);
    };
    let kept: KeptLab = serde_json::from_str(&text)?;
    let namespaces: Vec<&str> = kept.namespaces.iter().map(String::as_str).collect();
    crate::netns::kill_processes_in(&namespaces, Duration::from_secs(1));
    let _ = fs::remove_dir_all(&kept.pin_root);
    for ns in &kept.namespaces {
        let _ = run("ip", &["netns", "del", ns]);
    }
    let _ = fs::remove_file(KEPT_STATE);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use sipguard::policy::{AccessGate, Policy};

    use super::*;

    #[test]
    fn the_lab_policy_without_feedback_ignores_the_answers_and_nothing_else() {
        let with =
            Policy::parse(&lab_policy(true), "policy.toml").unwrap_or_else(|e| panic!("{e}"));
        let without =
            Policy::parse(&lab_policy(false), "policy.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with.feedback.auth_threshold, 10);
        assert!(with.feedback.verified);
        assert_eq!(with.feedback.verified_class.as_deref(), Some("registered"));
        assert_eq!(without.feedback.auth_threshold, 0);
        assert!(!without.feedback.verified);
        assert_eq!(with.bans, without.bans, "[bans] threshold untouched");
        let without_text = lab_policy(false);
        let changed: Vec<_> = LAB_POLICY
            .lines()
            .zip(without_text.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 3, "{changed:?}");
        let gate = |policy: &Policy| policy.access.as_ref().map(|access| access.gate);
        assert_eq!(gate(&with), Some(AccessGate::UnderAttack));
        assert_eq!(gate(&without), Some(AccessGate::Open));
    }

    #[test]
    fn the_flood_has_three_streams_and_spoofs_the_phone_from_its_port() {
        let config = flood_config([2, 0, 0, 0, 0, 9], &FLOOD_STREAMS);
        assert_eq!(config.matches("{\n").count(), FLOOD_STREAMS.len());
        assert!(config.contains("198, 18, 2, 10, 198, 18, 0, 1"));
        assert!(config.contains(&format!("c16({PHONE_SPOOFED_PORT}), c16(5070)")));
        assert_eq!(source_class(PHONE_IP, PHONE_SPOOFED_PORT), "phone-spoofed");
        assert_eq!(source_class(PHONE_IP, 5062), "phone");
        assert_eq!(source_class(FRESH_PHONE_IP, 5063), "fresh-phone");
        let access_only = Scale {
            flood_access_only: true,
            ..Scale::default()
        };
        let config = flood_config([2, 0, 0, 0, 0, 9], flood_streams(&access_only));
        assert_eq!(config.matches("{\n").count(), 1);
        assert!(config.contains("c16(5070)") && !config.contains("c16(5060)"));
        assert!(!config.contains("198, 18, 2, 10"));
    }

    #[test]
    fn the_fresh_phone_registers_as_1003_timed_from_its_first_register() {
        let scenario = fresh_phone_register();
        assert_eq!(scenario.matches("start_rtd=\"1\"").count(), 1);
        assert_eq!(scenario.matches("rtd=\"1\"/>").count(), 1);
        assert!(scenario.contains("username=1003 password=lab-secret-1003]"));
        assert!(!scenario.contains("1001"));
        assert!(KAMAILIO_CFG.contains("\"lab-secret-1003\""));
    }
}
