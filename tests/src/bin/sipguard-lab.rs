//! sipguard's lab runner (`cargo xtask demo` builds and runs it): sipguard in network namespaces,
//! end to end, with the real CLI binary.
//!
//! ```text
//!   netns sg-demo-peer-*                         netns sg-demo-sbc-*
//!   peer0: 198.18.1.10   2001:db8:1::10 (allow)  sbc0: 198.18.0.1  2001:db8::1
//!          198.18.2.10   2001:db8:2::10 (none)   <== sipguard (native XDP)
//!          198.18.66.10  2001:db8:66::10 (deny)      UDP/TCP listeners on 5060, 5061
//! ```

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use sipguard_tests::lab::{
    ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, Lab, SBC_IF, UNKNOWN_V4, UNKNOWN_V6, UdpCounter,
    send_udp, tcp_connects,
};
use sipguard_tests::sip_lab::{self, LabOptions, LabRun, Protection, Scale};

#[derive(Parser)]
#[command(name = "sipguard-lab")]
struct Cli {
    /// The sipguard binary to drive.
    #[arg(long, env = "SIPGUARD_BIN", default_value = "sipguard")]
    sipguard: PathBuf,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The SIP lab (Kamailio SBC, sipp carrier and phone, SIPVicious, a spoofed flood), played
    /// without a filter, in monitor mode and enforcing, side by side.
    Demo(LabArgs),
    /// One run of the SIP lab under one protection.
    Run(RunArgs),
    /// The access gate under the spoofed flood (issue 17): the lab enforcing, its whole flood at
    /// the access port, played twice side by side: with the gate open, and with `sipguard
    /// attack-mode on` for the flood; a phone that never registered before registers during it.
    Gate(GateArgs),
    /// Remove a lab kept with --keep: processes, pins, namespaces.
    Down,
    /// A smaller demo: two namespaces, allowed, unknown and denied sources, no SIP servers.
    Basic(DemoArgs),
    /// Measure admitted versus configured rate for one source flooding from one CPU and from
    /// every CPU at once (BPF_PROG_TEST_RUN, real program).
    BudgetAccuracy(BudgetArgs),
}

#[derive(clap::Args)]
struct BudgetArgs {
    /// Class rate, packets per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u32,
    /// Class burst.
    #[arg(long, default_value_t = 1000)]
    burst: u32,
    /// Runs per CPU.
    #[arg(long, default_value_t = 3_000_000)]
    runs: u32,
}

#[derive(clap::Args)]
struct GateArgs {
    /// Also write the two runs as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    scale: ScaleArgs,
}

#[derive(clap::Args)]
struct LabArgs {
    /// Only the enforcing run (about a minute instead of three).
    #[arg(long)]
    quick: bool,
    /// Then the access gate's pair of runs (`sipguard-lab gate`, about 3 more minutes).
    #[arg(long)]
    gate: bool,
    /// Leave the enforcing lab running afterwards, to explore it (`sipguard-lab down` removes it).
    #[arg(long)]
    keep: bool,
    /// Also write the runs as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    scale: ScaleArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value_t = Protection::Enforce)]
    protection: Protection,
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    scale: ScaleArgs,
}

/// Changes to the demo's scale (to measure the lab under other loads).
#[derive(clap::Args)]
struct ScaleArgs {
    /// Start from the lab test's scale instead of the demo's.
    #[arg(long)]
    test_scale: bool,
    /// Spoofed flood datagrams.
    #[arg(long)]
    flood_packets: Option<u32>,
    /// Flood packets per second (0: as fast as trafgen goes).
    #[arg(long)]
    flood_rate: Option<u32>,
    /// Unpaced trafgen processes, one per CPU (0: every CPU).
    #[arg(long)]
    flood_senders: Option<u32>,
    /// Carrier calls (at the scale's rate).
    #[arg(long)]
    carrier_calls: Option<u32>,
    /// The lab test's monitor run: a gentle flood, after the calls.
    #[arg(long)]
    gentle_flood: bool,
    /// The lab policy with the SBC's answers ignored (`[auth_failures] threshold = 0`,
    /// `[verified] enabled = false`): sipguard without its egress feedback, to compare with.
    #[arg(long)]
    no_feedback: bool,
}

impl ScaleArgs {
    fn scale(&self) -> Scale {
        let mut scale = if self.test_scale {
            Scale::test()
        } else {
            Scale::default()
        };
        if self.gentle_flood {
            scale = scale.gentle_flood_after_calls();
        }
        if let Some(packets) = self.flood_packets {
            scale.flood_packets = packets;
        }
        if let Some(rate) = self.flood_rate {
            scale.flood_rate = rate;
        }
        if let Some(senders) = self.flood_senders {
            scale.flood_senders = senders;
        }
        if let Some(calls) = self.carrier_calls {
            scale.carrier_calls = calls;
        }
        scale
    }
}

#[derive(clap::Args)]
struct DemoArgs {
    /// SIP OPTIONS datagrams per source.
    #[arg(long, default_value_t = 20)]
    datagrams: usize,
}

fn main() -> Result<()> {
    sipguard_tests::require_root();
    let cli = Cli::parse();
    match cli.task {
        Task::Demo(args) => lab_demo(&cli.sipguard, &args),
        Task::Run(args) => lab_run(&cli.sipguard, &args),
        Task::Gate(args) => {
            let runs = gate_runs(&cli.sipguard, &args.scale)?;
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&runs)?)?;
            }
            Ok(())
        }
        Task::Down => {
            if sip_lab::tear_down()? {
                println!("lab removed");
            } else {
                println!("no kept lab ({} not found)", sip_lab::KEPT_STATE);
            }
            Ok(())
        }
        Task::Basic(args) => demo(&cli.sipguard, args),
        Task::BudgetAccuracy(args) => budget_accuracy(&args),
    }
}

const PIN_ROOT: &str = "/sys/fs/bpf/sipguard-demo";

/// One SIP OPTIONS request, as a carrier's keepalive would send it.
fn options(source: IpAddr, dest: IpAddr) -> Vec<u8> {
    let host = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!(
        "OPTIONS sip:ping@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {s}:5060;branch=z9hG4bK-demo\r\n\
         Max-Forwards: 70\r\nFrom: <sip:demo@{s}>;tag=demo\r\nTo: <sip:ping@{d}>\r\n\
         Call-ID: demo@{s}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        s = host(source),
        d = host(dest)
    )
    .into_bytes()
}

struct Row {
    source: IpAddr,
    listed: &'static str,
    sent: usize,
    received: usize,
    tcp: bool,
}

const LAB_PIN_ROOT: &str = "/sys/fs/bpf/sipguard-lab";

fn work_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sipguard-lab-{}-{tag}", sipguard::time::now_unix()))
}

fn play(
    bin: &Path,
    protection: Protection,
    scale: &Scale,
    keep: bool,
    feedback: bool,
) -> Result<LabRun> {
    play_with(bin, protection, scale, keep, feedback, None)
}

/// `gate`: `Some(attack_mode)` for the access gate's runs (a fresh phone registers during the
/// flood; the gate shut for it when `attack_mode`).
fn play_with(
    bin: &Path,
    protection: Protection,
    scale: &Scale,
    keep: bool,
    feedback: bool,
    gate: Option<bool>,
) -> Result<LabRun> {
    if keep {
        // One kept lab at a time.
        sip_lab::tear_down()?;
    }
    let tag = match gate {
        None => protection.name().replace(' ', "-"),
        Some(false) => "gate-open".to_string(),
        Some(true) => "gate-shut".to_string(),
    };
    println!("== {} run ...", tag.replace('-', " "));
    let run = sip_lab::run_lab(&LabOptions {
        protection,
        scale: scale.clone(),
        sipguard: bin.to_path_buf(),
        work_dir: work_dir(&tag),
        pin_root: PathBuf::from(LAB_PIN_ROOT),
        keep,
        feedback,
        attack_mode: gate == Some(true),
        fresh_phone: gate.is_some(),
    })?;
    println!("   done in {:.0} s", run.seconds);
    Ok(run)
}

fn lab_demo(bin: &Path, args: &LabArgs) -> Result<()> {
    println!(
        "sipguard lab: a Kamailio SBC with a carrier trunk (5060) and remote phones (5070), \
         attacked by SIPVicious and a spoofed-source flood"
    );
    let scale = args.scale.scale();
    let feedback = !args.scale.no_feedback;
    let mut runs = Vec::new();
    if !args.quick {
        runs.push(play(bin, Protection::Off, &scale, false, feedback)?);
        runs.push(play(bin, Protection::Monitor, &scale, false, feedback)?);
    }
    runs.push(play(bin, Protection::Enforce, &scale, args.keep, feedback)?);
    println!("\n{}", sip_lab::render(&runs));
    if args.gate {
        println!();
        runs.extend(gate_runs(bin, &args.scale)?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&runs)?)?;
    }
    Ok(())
}

/// The access gate's pair of runs, reported side by side (and returned).
fn gate_runs(bin: &Path, scale: &ScaleArgs) -> Result<Vec<LabRun>> {
    println!(
        "sipguard lab, the access gate (issue 17): the spoofed flood at the access port, with \
         the gate open and with `sipguard attack-mode on`"
    );
    let scale = Scale {
        flood_access_only: true,
        ..scale.scale()
    };
    let runs = vec![
        play_with(bin, Protection::Enforce, &scale, false, true, Some(false))?,
        play_with(bin, Protection::Enforce, &scale, false, true, Some(true))?,
    ];
    println!("\n{}", sip_lab::render(&runs));
    println!("{}", sip_lab::render_gate(&runs[0], &runs[1]));
    Ok(runs)
}

fn lab_run(bin: &Path, args: &RunArgs) -> Result<()> {
    let run = play(
        bin,
        args.protection,
        &args.scale.scale(),
        args.keep,
        !args.scale.no_feedback,
    )?;
    println!("\n{}", sip_lab::render(std::slice::from_ref(&run)));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&run)?)?;
    }
    Ok(())
}

fn demo(bin: &Path, args: DemoArgs) -> Result<()> {
    println!(
        "\n== sipguard demo: a peer with allowlisted, unknown and denylisted addresses sends SIP to an SBC =="
    );
    let lab = Lab::new("demo").context("create the lab namespaces")?;
    let policy_dir = std::env::temp_dir().join(format!("sipguard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&policy_dir)?;
    let policy = policy_dir.join("policy.toml");
    std::fs::write(&policy, sipguard::policy::EXAMPLE_POLICY)?;
    println!("policy ({}):\n", policy.display());
    for line in sipguard::policy::EXAMPLE_POLICY.lines() {
        println!("    {line}");
    }

    let cli = |args: &[&str]| -> Result<String> {
        let mut all = vec!["--pin-root", PIN_ROOT, "--netns", lab.sbc.name()];
        all.extend_from_slice(args);
        println!("\n$ sipguard {}", all.join(" "));
        let output = Command::new(bin)
            .args(&all)
            .output()
            .with_context(|| format!("run {}", bin.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            bail!("sipguard {} failed", args.join(" "));
        }
        Ok(stdout)
    };
    let result = (|| -> Result<()> {
        cli(&[
            "attach",
            "--iface",
            SBC_IF,
            "--xdp-mode",
            "native",
            "--policy",
            &policy.to_string_lossy(),
        ])?;
        let rows = exchange(&lab, args.datagrams)?;
        print_rows(&rows);
        cli(&["stats", "--iface", SBC_IF])?;
        cli(&["status", "--iface", SBC_IF])?;
        Ok(())
    })();
    let detached = cli(&["detach", "--iface", SBC_IF]);
    let _ = std::fs::remove_dir_all(&policy_dir);
    drop(lab);
    let _ = std::fs::remove_dir(PIN_ROOT);
    println!("\nlab removed (namespaces, veth pair, pins under {PIN_ROOT})");
    result?;
    detached?;
    Ok(())
}

fn exchange(lab: &Lab, datagrams: usize) -> Result<Vec<Row>> {
    let udp = UdpCounter::start(&lab.sbc, 5060)?;
    let listeners: Vec<TcpListener> = [Lab::sbc_addr(false), Lab::sbc_addr(true)]
        .into_iter()
        .map(|ip| {
            lab.sbc
                .run(move || TcpListener::bind(SocketAddr::new(ip, 5061)))
        })
        .collect::<Result<Result<_, _>, _>>()??;
    let sources: [(IpAddr, &str); 6] = [
        (ALLOWED_V4.into(), "allow"),
        (UNKNOWN_V4.into(), "-"),
        (DENIED_V4.into(), "deny"),
        (ALLOWED_V6.into(), "allow"),
        (UNKNOWN_V6.into(), "-"),
        (DENIED_V6.into(), "deny"),
    ];
    let mut rows = Vec::new();
    for (source, listed) in sources {
        let dest_ip = Lab::sbc_addr(source.is_ipv6());
        let payload = options(source, dest_ip);
        lab.peer
            .run(move || send_udp(source, SocketAddr::new(dest_ip, 5060), datagrams, &payload))??;
        let tcp = lab.peer.run(move || {
            tcp_connects(
                source,
                SocketAddr::new(dest_ip, 5061),
                Duration::from_millis(800),
            )
        })?;
        rows.push(Row {
            source,
            listed,
            sent: datagrams,
            received: 0,
            tcp,
        });
    }
    let counts = udp.finish(Duration::from_millis(300));
    for row in &mut rows {
        row.received = counts.get(&row.source).copied().unwrap_or(0);
    }
    drop(listeners);
    Ok(rows)
}

fn print_rows(rows: &[Row]) {
    println!("\nwhat reached the SBC (listeners behind the filter):");
    println!(
        "  {:<18} {:<6} {:>13} {:>14}  {:<22}",
        "SOURCE", "LIST", "UDP/5060 SENT", "UDP RECEIVED", "TCP/5061 (SIP over TLS)"
    );
    for row in rows {
        println!(
            "  {:<18} {:<6} {:>13} {:>14}  {:<22}",
            row.source.to_string(),
            row.listed,
            row.sent,
            row.received,
            if row.tcp {
                "connected"
            } else {
                "no answer (dropped)"
            }
        );
    }
}

fn budget_accuracy(args: &BudgetArgs) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "one allowlisted source, class {}/s burst {}, {} runs per CPU (BPF_PROG_TEST_RUN)",
        args.rate, args.burst, args.runs
    );
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>9} {:>11}",
        "CPUs", "runs", "admitted", "configured*", "ratio", "ns/run"
    );
    for used in [1, cpus] {
        // A fresh filter (and bucket) per measurement.
        let flood =
            sipguard_tests::harness::flood_one_source(args.rate, args.burst, args.runs, used);
        let configured = f64::from(args.burst) + f64::from(args.rate) * flood.elapsed.as_secs_f64();
        let ns_per_run = flood
            .per_thread
            .iter()
            .map(|d| d.as_nanos() as f64)
            .sum::<f64>()
            / flood.runs as f64;
        println!(
            "{:<22} {:>12} {:>12} {:>14.0} {:>9.4} {:>11.1}",
            if used == 1 {
                "1 (pinned to CPU 0)".to_string()
            } else {
                format!("{used} (all, concurrently)")
            },
            flood.runs,
            flood.admitted,
            configured,
            flood.admitted as f64 / configured,
            ns_per_run
        );
    }
    println!("* burst + rate x wall time from the common start to the last thread's end");
    Ok(())
}
