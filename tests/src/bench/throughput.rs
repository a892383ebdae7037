//! Throughput through veth: one generator namespace joined by a veth pair to one sink namespace
//! per subject (sipguard, bare XDP drop and pass, xdp-filter, nftables at netdev ingress and at
//! inet prerouting), the same frames sent to each, in interleaved rounds.
//!
//! ```text
//!  netns sg-bgen-*                                  netns sg-bsN-*
//!  gN  --- BPF_PROG_TEST_RUN live frames --------->  sink0 198.18.0.1/15, UDP socket on 5060
//!          bench_gen (XDP_TX, a new source              subject N: XDP program natively, or
//!          in 198.19.0.0/17 every packet) or            nftables with GRO on (a veth takes
//!          bench_tx (one allowlisted source)            XDP frames only with XDP or GRO)
//! ```
//!
//! Live frames are turned into transmissions on gN, and the receiving veth processes each batch
//! of 64 on the same CPU before the next is sent, so the rate is what generator plus subject
//! sustain on one CPU: a ratio between subjects is meaningful, the absolute figure is not a NIC
//! line rate. Every send is bounded in packets and in seconds.

use std::{
    net::UdpSocket,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use serde::Serialize;
use sipguard::{
    dataplane::{AttachRequest, XdpModeChoice, attach, ifindex},
    policy::Policy,
    report::Stats,
    state::{EventStats, State, Target},
};
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    harness::{XDP_DROP, XDP_PASS},
    lab::mac_of,
    netns::{NetNs, add_addr, veth},
    pins::TempPinRoot,
};

use super::{
    mix::{CARRIER_V4, Mix, Net, TRUNK_PORT, denylist, write_policy},
    programs::ProgramRow,
    scenarios::{XfSetup, options4},
    stats::{Summary, round_order},
    sys::{Pinned, check_interrupted, cpus, in_netns},
    xdp_filter::XdpFilter,
};

pub(crate) struct Settings {
    pub rounds: usize,
    /// Bound per send: packets...
    pub packets: u64,
    /// ... and seconds (checked between chunks).
    pub seconds: f64,
    /// Packets per BPF_PROG_TEST_RUN call.
    pub chunk: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Traffic {
    /// Unknown sources (a new one every packet) to the trunk port: everything is dropped.
    SpoofedFlood,
    /// One allowlisted source to the trunk port: everything passes to the stack.
    Allowed,
}

impl Traffic {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Traffic::SpoofedFlood => "spoofed_flood",
            Traffic::Allowed => "allowed",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Cell {
    pub subject: String,
    pub traffic: Traffic,
    /// Packets per second the subject dropped (flood) or passed (allowed), one per round: the
    /// packets it counted over the kernel's time for sending and receiving them (test_run's
    /// clock, which leaves out the time the CPU was given to other tasks at reschedule points).
    pub pps: Summary,
    /// The same over wall-clock time (includes whatever else the machine ran meanwhile).
    pub wall_pps: Summary,
    /// Packets the generator sent and the subject counted, all rounds.
    pub generated: u64,
    pub counted: u64,
    pub kernel_seconds: f64,
    pub wall_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct RatioRow {
    pub traffic: Traffic,
    pub subject: String,
    pub against: String,
    pub ratio: Summary,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ThroughputReport {
    pub generator: String,
    pub frame_bytes: usize,
    pub prefixes: usize,
    pub rounds: usize,
    pub packets_per_send: u64,
    pub seconds_per_send: f64,
    pub generator_cpu: usize,
    pub subjects: Vec<SubjectInfo>,
    pub results: Vec<Cell>,
    pub ratios: Vec<RatioRow>,
    /// sipguard's drop events over the whole throughput part.
    pub sipguard_events: Option<EventStats>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct SubjectInfo {
    pub subject: String,
    pub setup: String,
}

enum Kind {
    Sipguard {
        state: Box<State>,
        _pins: TempPinRoot,
    },
    /// bench_drop or bench_pass, attached.
    Bench(Ebpf),
    XdpFilter(Box<XdpFilter>),
    Nft(&'static str),
}

struct Sink {
    name: &'static str,
    setup: String,
    kind: Kind,
    traffic: Vec<Traffic>,
    gen_ifindex: u32,
    /// Frames addressed to this sink's MAC.
    frames: [Vec<u8>; 2],
    _socket: UdpSocket,
    // Last: deleting the namespace removes the veth pair (and what is attached to it).
    ns: NetNs,
}

const SINK_IF: &str = "sink0";

impl Sink {
    fn frame(&self, traffic: Traffic) -> &[u8] {
        match traffic {
            Traffic::SpoofedFlood => &self.frames[0],
            Traffic::Allowed => &self.frames[1],
        }
    }

    /// Packets the subject dropped (flood) or passed (allowed) so far.
    fn count(&self, traffic: Traffic) -> Result<u64> {
        let flood = traffic == Traffic::SpoofedFlood;
        Ok(match &self.kind {
            Kind::Sipguard { state, .. } => {
                let stats = Stats::read(state)?;
                let reason = if flood {
                    Reason::NotAllowlisted
                } else {
                    Reason::Allowlisted
                };
                stats.get(Zone::Trunk, reason, false).packets
            }
            Kind::Bench(ebpf) => {
                let map = ebpf.map("BENCH_COUNT").context("BENCH_COUNT")?;
                let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
                counts.get(&0, 0)?.iter().sum()
            }
            Kind::XdpFilter(xf) => xf.packets(if flood { XDP_DROP } else { XDP_PASS })?,
            Kind::Nft(family) => {
                let name = if flood { "dropped" } else { "passed" };
                let text = self
                    .ns
                    .exec("nft", &["list", "counter", family, "sgbench", name])?;
                text.split("packets ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("no packet count in {text}"))?
            }
        })
    }
}

/// nftables doing what sipguard's trunk does: denylist, then the allowlist, drop the rest, on the
/// SIP ports; sets of prefixes (interval sets, as many elements as sipguard has prefixes).
fn nft_ruleset(family: &str, mix: &Mix) -> String {
    let list = |nets: &mut dyn Iterator<Item = Net>| -> String {
        nets.map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",\n    ")
    };
    let v4 = |n: &Net| matches!(n, Net::V4(..));
    let allow = mix.all();
    let deny = denylist();
    let hook = match family {
        "netdev" => format!("type filter hook ingress device \"{SINK_IF}\" priority 0"),
        _ => "type filter hook prerouting priority -300".to_string(),
    };
    format!(
        r#"table {family} sgbench {{
  set allow4 {{ type ipv4_addr; flags interval; elements = {{
    {allow4} }} }}
  set allow6 {{ type ipv6_addr; flags interval; elements = {{
    {allow6} }} }}
  set deny4 {{ type ipv4_addr; flags interval; elements = {{
    {deny4} }} }}
  set deny6 {{ type ipv6_addr; flags interval; elements = {{
    {deny6} }} }}
  counter dropped {{ }}
  counter passed {{ }}
  chain sip {{
    ip saddr @deny4 counter name "dropped" drop
    ip6 saddr @deny6 counter name "dropped" drop
    ip saddr @allow4 counter name "passed" accept
    ip6 saddr @allow6 counter name "passed" accept
    counter name "dropped" drop
  }}
  chain filter {{
    {hook}; policy accept;
    udp dport {TRUNK_PORT} jump sip
    tcp dport {{ {TRUNK_PORT}, 5061 }} jump sip
  }}
}}
"#,
        allow4 = list(&mut allow.iter().copied().filter(v4)),
        allow6 = list(&mut allow.iter().copied().filter(|n| !v4(n))),
        deny4 = list(&mut deny.iter().copied().filter(v4)),
        deny6 = list(&mut deny.iter().copied().filter(|n| !v4(n))),
    )
}

/// bench_gen and bench_tx, the packet generators.
struct Generator {
    ebpf: Ebpf,
}

impl Generator {
    fn load() -> Result<Generator> {
        let mut ebpf = EbpfLoader::new().load(sipguard::BASELINES_OBJECT)?;
        for name in ["bench_gen", "bench_tx"] {
            let program: &mut Xdp = ebpf.program_mut(name).context(name)?.try_into()?;
            program.load()?;
        }
        Ok(Generator { ebpf })
    }

    fn program(&self, traffic: Traffic) -> Result<&Xdp> {
        let name = match traffic {
            Traffic::SpoofedFlood => "bench_gen",
            Traffic::Allowed => "bench_tx",
        };
        Ok(self.ebpf.program(name).context(name)?.try_into()?)
    }

    /// Sends `frame` out of interface `ifindex` of `gen` until `settings` bounds are reached.
    fn send(
        &self,
        gen_ns: &NetNs,
        ifindex: u32,
        frame: &[u8],
        traffic: Traffic,
        settings: &Settings,
    ) -> Result<Sent> {
        let program = self.program(traffic)?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The frame "arrives" on gN; XDP_TX sends it to the peer.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        in_netns(gen_ns, || -> Result<Sent> {
            let start = Instant::now();
            let mut sent = Sent::default();
            while sent.packets < settings.packets
                && start.elapsed().as_secs_f64() < settings.seconds
            {
                check_interrupted()?;
                let batch = (settings.packets - sent.packets).min(u64::from(settings.chunk)) as u32;
                let result = program.test_run(TestRunOptions {
                    data_in: Some(frame),
                    ctx_in: Some(&ctx),
                    repeat: batch,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::default()
                });
                if result.is_err() {
                    check_interrupted()?;
                }
                let result = result.context("BPF_PROG_TEST_RUN in live-frames mode")?;
                sent.packets += u64::from(batch);
                // The kernel's mean time per packet (whole ns), receiving veth's work included:
                // the batch is processed when test_run re-enables bottom halves.
                sent.kernel_seconds += result.duration.as_secs_f64() * f64::from(batch);
            }
            sent.wall_seconds = start.elapsed().as_secs_f64();
            Ok(sent)
        })?
    }
}

#[derive(Default)]
struct Sent {
    packets: u64,
    kernel_seconds: f64,
    wall_seconds: f64,
}

struct Lab {
    gen_ns: NetNs,
    sinks: Vec<Sink>,
}

fn build(dir: &Path, mix: &Mix, policy: &Policy) -> Result<Lab> {
    let gen_ns = NetNs::new("bgen")?;
    let (v4, v6) = mix.addresses();
    let subjects: [(&str, Vec<Traffic>); 6] = [
        ("sipguard", vec![Traffic::SpoofedFlood, Traffic::Allowed]),
        ("bench_drop", vec![Traffic::SpoofedFlood]),
        ("bench_pass", vec![Traffic::Allowed]),
        ("xdp_filter", vec![Traffic::SpoofedFlood, Traffic::Allowed]),
        (
            "nft_netdev_ingress",
            vec![Traffic::SpoofedFlood, Traffic::Allowed],
        ),
        (
            "nft_inet_prerouting",
            vec![Traffic::SpoofedFlood, Traffic::Allowed],
        ),
    ];
    let mut sinks = Vec::new();
    for (i, (name, traffic)) in subjects.into_iter().enumerate() {
        let ns = NetNs::new(&format!("bs{i}"))?;
        let gen_if = format!("g{i}");
        veth(&gen_ns, &gen_if, &ns, SINK_IF)?;
        add_addr(&ns, SINK_IF, "198.18.0.1/15")?;
        add_addr(&ns, SINK_IF, "2001:db8::1/32")?;
        // Passed SIP ends in a socket nobody reads (no ICMP port unreachable back to gN).
        let socket = in_netns(&ns, || UdpSocket::bind(("0.0.0.0", TRUNK_PORT)))??;
        let gen_ifindex =
            in_netns(&gen_ns, || ifindex(&gen_if))?.with_context(|| format!("no {gen_if}"))?;
        let (gen_mac, sink_mac) = (mac_of(&gen_ns, &gen_if)?, mac_of(&ns, SINK_IF)?);
        let frames = [
            // bench_gen rewrites the source of every packet.
            options4(std::net::Ipv4Addr::new(198, 19, 0, 3), TRUNK_PORT)
                .with_macs(gen_mac, sink_mac)
                .build(),
            options4(CARRIER_V4, TRUNK_PORT)
                .with_macs(gen_mac, sink_mac)
                .build(),
        ];
        let (kind, setup) = match name {
            "sipguard" => {
                let pins = TempPinRoot::new("bench");
                let target =
                    Target::new(SINK_IF, Some(ns.name()), pins.path()).expect("valid names");
                let request = AttachRequest {
                    target: target.clone(),
                    xdp_mode: XdpModeChoice::Native,
                    policy: Some(policy),
                    mode: None,
                };
                in_netns(&ns, || attach(&request))?.map_err(|e| anyhow!("attach: {e}"))?;
                let state = Box::new(State::open(&target)?);
                (
                    Kind::Sipguard { state, _pins: pins },
                    format!(
                        "sipguard attached natively, the {}-prefix policy",
                        mix.counts.total
                    ),
                )
            }
            "bench_drop" | "bench_pass" => {
                let mut ebpf = EbpfLoader::new().load(sipguard::BASELINES_OBJECT)?;
                let program: &mut Xdp = ebpf.program_mut(name).context(name)?.try_into()?;
                program.load()?;
                in_netns(&ns, || program.attach(SINK_IF, XdpMode::Driver))??;
                (
                    Kind::Bench(ebpf),
                    format!("{name} attached natively (one per-CPU counter, a verdict)"),
                )
            }
            "xdp_filter" => (
                Kind::XdpFilter(Box::new(XdpFilter::load(
                    &ns,
                    SINK_IF,
                    XfSetup::DropUnmatched,
                    &v4,
                    &v6,
                )?)),
                format!(
                    "xdp-filter -p deny (drop unmatched) natively, {} + {} source addresses",
                    v4.len(),
                    v6.len()
                ),
            ),
            _ => {
                let family = if name == "nft_netdev_ingress" {
                    "netdev"
                } else {
                    "inet"
                };
                let file = dir.join(format!("{family}.nft"));
                std::fs::write(&file, nft_ruleset(family, mix))?;
                ns.exec("nft", &["-f", &file.to_string_lossy()])?;
                // Without XDP a veth takes the generator's XDP frames only with GRO on.
                ns.exec("ethtool", &["-K", SINK_IF, "gro", "on"])?;
                let hook = if family == "netdev" {
                    "netdev ingress"
                } else {
                    "inet prerouting, priority -300 (before conntrack)"
                };
                (
                    Kind::Nft(family),
                    format!(
                        "nftables {hook}, GRO on, no XDP: denylist set, allowlist sets ({} \
                         prefixes), drop the rest of UDP {TRUNK_PORT} / TCP {TRUNK_PORT},5061",
                        mix.counts.total
                    ),
                )
            }
        };
        sinks.push(Sink {
            name,
            setup,
            kind,
            traffic,
            gen_ifindex,
            frames,
            _socket: socket,
            ns,
        });
    }
    Ok(Lab { gen_ns, sinks })
}

/// Runs the throughput part with the allowlist `mix`; also returns the generators' sizes.
pub(super) fn run(
    settings: &Settings,
    dir: &Path,
    mix: &Mix,
) -> Result<(ThroughputReport, Vec<ProgramRow>)> {
    // The measured policy, SIP rules included (they are all for the access zone).
    let policy_path = write_policy(&dir.join("throughput"), mix, true)?;
    let policy = Policy::load(&policy_path).map_err(|e| anyhow!("{e}"))?;
    let generator = Generator::load()?;
    let lab = build(dir, mix, &policy)?;
    // Generator and receiver run on the same CPU (the receiving veth's NAPI runs where the frames
    // were sent): pin it, away from CPU 0 where most interrupts land.
    let cpu = cpus().saturating_sub(1);
    let _pinned = Pinned::to(cpu);

    let units: Vec<(usize, Traffic)> = lab
        .sinks
        .iter()
        .enumerate()
        .flat_map(|(i, sink)| sink.traffic.iter().map(move |t| (i, *t)))
        .collect();
    let mut samples = vec![Vec::new(); units.len()];
    let mut wall_samples = vec![Vec::new(); units.len()];
    let mut totals: Vec<Sent> = units.iter().map(|_| Sent::default()).collect();
    let mut counted_totals = vec![0u64; units.len()];
    for round in 0..settings.rounds {
        for index in round_order(units.len(), round, settings.rounds) {
            check_interrupted()?;
            let (s, traffic) = units[index];
            let sink = &lab.sinks[s];
            let before = sink.count(traffic)?;
            let sent = generator.send(
                &lab.gen_ns,
                sink.gen_ifindex,
                sink.frame(traffic),
                traffic,
                settings,
            )?;
            // Batches are processed before test_run returns; a short pause covers stragglers.
            std::thread::sleep(Duration::from_millis(20));
            let counted = sink.count(traffic)? - before;
            samples[index].push(counted as f64 / sent.kernel_seconds.max(1e-9));
            wall_samples[index].push(counted as f64 / sent.wall_seconds.max(1e-9));
            let total = &mut totals[index];
            total.packets += sent.packets;
            total.kernel_seconds += sent.kernel_seconds;
            total.wall_seconds += sent.wall_seconds;
            counted_totals[index] += counted;
        }
    }

    let results: Vec<Cell> = units
        .iter()
        .enumerate()
        .map(|(i, (s, traffic))| Cell {
            subject: lab.sinks[*s].name.to_string(),
            traffic: *traffic,
            pps: Summary::of(&samples[i]),
            wall_pps: Summary::of(&wall_samples[i]),
            generated: totals[i].packets,
            counted: counted_totals[i],
            kernel_seconds: totals[i].kernel_seconds,
            wall_seconds: totals[i].wall_seconds,
        })
        .collect();
    let find = |subject: &str, traffic: Traffic| {
        units
            .iter()
            .position(|(s, t)| lab.sinks[*s].name == subject && *t == traffic)
    };
    let mut ratios = Vec::new();
    for (traffic, against) in [
        (Traffic::SpoofedFlood, "bench_drop"),
        (Traffic::SpoofedFlood, "xdp_filter"),
        (Traffic::SpoofedFlood, "nft_netdev_ingress"),
        (Traffic::SpoofedFlood, "nft_inet_prerouting"),
        (Traffic::Allowed, "bench_pass"),
        (Traffic::Allowed, "xdp_filter"),
        (Traffic::Allowed, "nft_netdev_ingress"),
        (Traffic::Allowed, "nft_inet_prerouting"),
    ] {
        if let (Some(a), Some(b)) = (find("sipguard", traffic), find(against, traffic)) {
            ratios.push(RatioRow {
                traffic,
                subject: "sipguard".into(),
                against: against.into(),
                ratio: Summary::ratio(&samples[a], &samples[b]),
            });
        }
    }
    let mut programs = Vec::new();
    for name in ["bench_gen", "bench_tx"] {
        let program: &Xdp = generator.ebpf.program(name).context(name)?.try_into()?;
        programs.push(ProgramRow::new(
            &program.info()?,
            &format!("generator ({name})"),
        ));
    }
    let sipguard_events = lab.sinks.iter().find_map(|sink| match &sink.kind {
        Kind::Sipguard { state, .. } => state.event_stats().ok(),
        _ => None,
    });
    let report = ThroughputReport {
        generator: "BPF_PROG_TEST_RUN live frames (batch 64), bench_gen / bench_tx returning \
                    XDP_TX on the sending veth"
            .into(),
        frame_bytes: lab.sinks[0].frames[0].len(),
        prefixes: mix.counts.total,
        rounds: settings.rounds,
        packets_per_send: settings.packets,
        seconds_per_send: settings.seconds,
        generator_cpu: cpu,
        subjects: lab
            .sinks
            .iter()
            .map(|s| SubjectInfo {
                subject: s.name.to_string(),
                setup: s.setup.clone(),
            })
            .collect(),
        results,
        ratios,
        sipguard_events,
    };
    Ok((report, programs))
}
