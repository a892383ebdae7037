//! Evidence capture: the kernel copies only while a capture is on, only matching SIP verdicts,
//! within the capture's budget, and counts what it could not copy; `sipguard capture` writes
//! pcapng that tshark reads back with the verdicts as packet comments; the rolling ring of
//! `sipguard run`; a killed capture stops the kernel's copying by its lease.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use aya::maps::{Map, MapData, RingBuf};
use sipguard::{
    capture::{self, Budget, Filter, Session, Stats, record::Captured},
    state::Target,
    time::boot_now_ns,
};
use sipguard_common::abi::{Reason, Zone, capture_outcome, capture_slot, map_name};
use sipguard_tests::{
    frames::Packet,
    harness::{self, TestFilter, pass},
    lab::{ALLOWED_V4, Lab, SBC_IF, UNKNOWN_V4, UNKNOWN_V6, send_udp, wait_until},
    pins::TempPinRoot,
    sipguard_bin,
};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
const DENIED: Ipv4Addr = Ipv4Addr::new(198, 18, 66, 10);

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24", "2001:db8:1::/48"]
[[deny]]
name = "scanners"
cidrs = ["198.18.66.0/24"]
"#;

const OPTIONS: &[u8] =
    b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

fn options(src: Ipv4Addr) -> Vec<u8> {
    Packet::udp4(src, SBC, 5062, 5060, OPTIONS.to_vec()).build()
}

/// Records waiting in a slot's ring (consumed).
fn ring_records(target: &Target, slot: u32) -> Vec<Captured> {
    let pin = target.map_pin(map_name::CAPTURE_RINGS[slot as usize]);
    let data = MapData::from_pin(&pin).expect("open the capture ring");
    let mut ring = RingBuf::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(Captured::decode(&item).expect("a whole record"));
    }
    out
}

fn live_stats(target: &Target) -> Stats {
    capture::stats(target, capture_slot::LIVE).unwrap()
}

#[test]
fn the_kernel_copies_matching_verdicts_only_while_a_capture_runs_and_within_its_budget() {
    let mut filter = TestFilter::new(POLICY);
    let target = filter.target.clone();
    let (stranger, denied, carrier) = (options(STRANGER), options(DENIED), options(CARRIER));

    // No capture: verdicts as always, nothing copied, no counter moves.
    for _ in 0..3 {
        assert_eq!(
            filter.run(&stranger),
            harness::drop(Zone::Trunk, Reason::NotAllowlisted)
        );
        assert_eq!(
            filter.run(&denied),
            harness::drop(Zone::Trunk, Reason::Denylisted)
        );
        assert_eq!(filter.run(&carrier), pass(Zone::Trunk, Reason::Allowlisted));
    }
    assert_eq!(live_stats(&target), Stats::default());
    assert!(ring_records(&target, capture_slot::LIVE).is_empty());

    // A capture of one reason, cut at 64 bytes.
    let only_not_allowlisted = Filter {
        reasons: vec![Reason::NotAllowlisted.name().to_string()],
        snaplen: 64,
        ..Filter::default()
    };
    let mut session = Session::start(
        &target,
        capture_slot::LIVE,
        &only_not_allowlisted,
        Budget::default(),
    )
    .unwrap();
    assert_eq!(
        filter.run(&stranger),
        harness::drop(Zone::Trunk, Reason::NotAllowlisted)
    );
    assert_eq!(
        filter.run(&denied),
        harness::drop(Zone::Trunk, Reason::Denylisted)
    );
    assert_eq!(filter.run(&carrier), pass(Zone::Trunk, Reason::Allowlisted));
    let mut copied = Vec::new();
    session.drain(|bytes| copied.push(Captured::decode(bytes).unwrap()));
    assert_eq!(copied.len(), 1, "only the not-allowlisted drop: {copied:?}");
    let packet = &copied[0];
    assert_eq!(packet.reason_name(), "not_allowlisted");
    assert_eq!(packet.zone_name(), "trunk");
    assert_eq!(packet.outcome, capture_outcome::DROPPED);
    assert_eq!(packet.packet_len as usize, stranger.len());
    assert_eq!(packet.data, stranger[..64], "the first snaplen bytes");
    assert_eq!(packet.source(), Some(IpAddr::from(STRANGER)));
    let stats = session.stats().unwrap();
    assert_eq!((stats.copied, stats.truncated), (1, 1));
    assert_eq!(stats.copied_bytes, 64);
    assert_eq!((stats.over_budget, stats.ring_full), (0, 0));
    drop_session(session);

    // Passed packets too, from the carrier's network only.
    let passed = Filter {
        include_passed: true,
        source: Some("198.18.1.0/24".parse().unwrap()),
        ..Filter::default()
    };
    let mut session =
        Session::start(&target, capture_slot::LIVE, &passed, Budget::default()).unwrap();
    assert_eq!(filter.run(&carrier), pass(Zone::Trunk, Reason::Allowlisted));
    filter.run(&stranger);
    filter.run(&denied);
    let mut copied = Vec::new();
    session.drain(|bytes| copied.push(Captured::decode(bytes).unwrap()));
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0].outcome, capture_outcome::PASSED);
    assert_eq!(copied[0].reason_name(), "allowlisted");
    assert_eq!(copied[0].data, carrier, "whole: shorter than the snaplen");
    assert_eq!(session.stats().unwrap().truncated, 0);
    drop_session(session);

    // Not SIP (another port) is never copied, whatever the filter.
    let mut session = Session::start(
        &target,
        capture_slot::LIVE,
        &Filter {
            include_passed: true,
            ..Filter::default()
        },
        Budget::default(),
    )
    .unwrap();
    let dns = Packet::udp4(STRANGER, SBC, 5062, 53, b"not sip".to_vec()).build();
    assert_eq!(filter.run(&dns), pass(Zone::None, Reason::NotSip));
    assert_eq!(session.drain(|_| {}), 0);
    drop_session(session);

    // The budget: 2 packets a second over all CPUs; the data plane's verdicts do not change.
    let before = filter.stats();
    let mut session = Session::start(
        &target,
        capture_slot::LIVE,
        &Filter::default(),
        Budget {
            packets_per_second: 2,
            bytes_per_second: 1_000_000,
        },
    )
    .unwrap();
    filter.run_repeated(&stranger, 50);
    let stats = session.stats().unwrap();
    assert_eq!(stats.copied + stats.over_budget, 50, "{stats:?}");
    assert!(stats.copied >= 1 && stats.over_budget > 0, "{stats:?}");
    assert_eq!(session.drain(|_| {}) as u64, stats.copied);
    let after = filter.stats();
    assert_eq!(
        after
            .get(Zone::Trunk, Reason::NotAllowlisted, false)
            .packets
            - before
                .get(Zone::Trunk, Reason::NotAllowlisted, false)
                .packets,
        50,
        "every packet dropped, copied or not"
    );
    drop_session(session);

    // The byte budget: 200 bytes a second (a CPU's bucket holds one 128-byte snap) cannot
    // take a 110-byte packet twice in a row on one CPU.
    let mut session = Session::start(
        &target,
        capture_slot::LIVE,
        &Filter {
            snaplen: 128,
            ..Filter::default()
        },
        Budget {
            packets_per_second: 1000,
            bytes_per_second: 200,
        },
    )
    .unwrap();
    filter.run_repeated(&stranger, 20);
    let stats = session.stats().unwrap();
    assert_eq!(stats.copied + stats.over_budget, 20, "{stats:?}");
    assert!(stats.copied >= 1 && stats.over_budget >= 18, "{stats:?}");
    assert_eq!(session.drain(|_| {}) as u64, stats.copied);
    drop_session(session);

    // Off again: nothing copied, nothing counted.
    let idle = live_stats(&target);
    for _ in 0..5 {
        filter.run(&stranger);
        filter.run(&carrier);
    }
    assert_eq!(live_stats(&target), idle);
    assert!(ring_records(&target, capture_slot::LIVE).is_empty());
}

fn drop_session(session: Session) {
    std::mem::drop(session);
}

const SIP_POLICY: &str = r#"
mode = "monitor"
[access]
udp = [5070]
class = "phones"
[classes]
phones = { rate = 1000, burst = 1000 }
[scanners]
builtin = true
zones = ["access"]
"#;

/// A SIP stage's drop carries its signature's name; monitor mode says would_drop.
#[test]
fn drops_of_the_sip_stages_name_their_signature() {
    let mut filter = TestFilter::new(SIP_POLICY);
    let scanner = Packet::udp4(
        STRANGER,
        SBC,
        5062,
        5070,
        b"OPTIONS sip:100@198.18.0.1 SIP/2.0\r\nUser-Agent: friendly-scanner\r\nCSeq: 1 OPTIONS\r\n\r\n"
            .to_vec(),
    )
    .build();
    let mut session = Session::start(
        &filter.target,
        capture_slot::LIVE,
        &Filter {
            reasons: vec!["scanner".into()],
            ..Filter::default()
        },
        Budget::default(),
    )
    .unwrap();
    let verdict = filter.run(&scanner);
    assert_eq!(verdict.reason, Reason::Scanner);
    assert!(
        verdict.monitored && verdict.passed(),
        "monitor mode: {verdict:?}"
    );
    let mut copied = Vec::new();
    session.drain(|bytes| copied.push(Captured::decode(bytes).unwrap()));
    assert_eq!(copied.len(), 1);
    let names = sipguard::sip_stats::names_by_id(&filter.loaded.state).unwrap();
    assert_eq!(
        copied[0].comment(&names.0, &names.1),
        "sipguard: outcome=would_drop reason=scanner zone=access signature=friendly-scanner"
    );
    assert_eq!(copied[0].data, scanner);
}

/// One capture at a time per interface.
#[test]
fn a_second_capture_on_the_same_interface_is_refused() {
    let filter = TestFilter::new(POLICY);
    let first = Session::start(
        &filter.target,
        capture_slot::LIVE,
        &Filter::default(),
        Budget::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(filter.target.pin_root())
        .args(["capture", "--iface", filter.target.iface(), "-w"])
        .arg(dir.path().join("second.pcapng"))
        .args(["--count", "1", "--duration", "5s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already running") && stderr.contains(&std::process::id().to_string()),
        "{stderr}"
    );
    std::mem::drop(first);
}

/// `kill -9` of a capture: the kernel stops copying once its lease runs out, and clears the
/// slot itself.
#[test]
fn a_killed_capture_stops_the_kernel_copying_by_its_lease() {
    let mut filter = TestFilter::new(POLICY);
    let target = filter.target.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(target.pin_root())
        .args(["capture", "--iface", target.iface(), "-w"])
        .arg(dir.path().join("killed.pcapng"))
        .args(["--duration", "120s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        wait_until(Duration::from_secs(20), || {
            capture::control(&target, capture_slot::LIVE)
                .is_ok_and(|c| c.owner_pid == pid && c.expires_ns != 0)
        }),
        "the capture turned its slot on"
    );
    let stranger = options(STRANGER);
    filter.run(&stranger);
    assert_eq!(live_stats(&target).copied, 1, "copying while it runs");
    // SAFETY: our child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let lease = capture::control(&target, capture_slot::LIVE).unwrap();
    assert_ne!(lease.expires_ns, 0, "nobody turned it off");
    // Wait out the lease (at most CAPTURE_LEASE_NS), then the kernel copies nothing more.
    assert!(wait_until(Duration::from_secs(10), || boot_now_ns() > lease.expires_ns));
    let copied = live_stats(&target).copied;
    for _ in 0..10 {
        assert_eq!(
            filter.run(&stranger),
            harness::drop(Zone::Trunk, Reason::NotAllowlisted)
        );
    }
    assert_eq!(
        live_stats(&target).copied,
        copied,
        "no copy after the lease"
    );
    assert_eq!(
        capture::control(&target, capture_slot::LIVE)
            .unwrap()
            .expires_ns,
        0,
        "the kernel turned the slot off: the hooks stop tail-calling"
    );
    // And the slot is free for the next capture.
    std::mem::drop(
        Session::start(
            &target,
            capture_slot::LIVE,
            &Filter::default(),
            Budget::default(),
        )
        .unwrap(),
    );
}

/// Ctrl-C or SIGTERM ends a capture cleanly: the file is written, the counters printed, the
/// kernel's slot turned off at once.
#[test]
fn a_terminated_capture_writes_its_file_and_turns_the_slot_off() {
    let mut filter = TestFilter::new(POLICY);
    let target = filter.target.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("terminated.pcapng");
    let child = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(target.pin_root())
        .args(["capture", "--iface", target.iface(), "-w"])
        .arg(&file)
        .args(["--duration", "120s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut running = Running(child);
    assert!(
        wait_until(Duration::from_secs(20), || {
            capture::control(&target, capture_slot::LIVE)
                .is_ok_and(|c| c.owner_pid == pid && c.expires_ns != 0)
        }),
        "the capture turned its slot on"
    );
    for _ in 0..3 {
        filter.run(&options(STRANGER));
    }
    assert_eq!(live_stats(&target).copied, 3);
    // SAFETY: our child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stderr = finish(std::mem::replace(&mut running, Running(spawn_true())));
    assert!(
        stderr.contains("3 packets written") && stderr.contains("kernel: 3 copied"),
        "{stderr}"
    );
    assert_eq!(
        capture::control(&target, capture_slot::LIVE)
            .unwrap()
            .expires_ns,
        0
    );
    let packets = tshark(&file);
    assert_eq!(packets.len(), 3, "{packets:?}");
}

/// A placeholder child for `std::mem::replace`.
fn spawn_true() -> Child {
    Command::new("true").spawn().unwrap()
}

// ------------------------------------------------------------------------------------------------
// Real packets through veth, the CLI and tshark
// ------------------------------------------------------------------------------------------------

struct Veth {
    lab: Lab,
    pins: TempPinRoot,
    dir: tempfile::TempDir,
}

/// Kills a child process on drop (a failed assertion must not leave a capture running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let veth = Veth {
            lab: Lab::new(tag).unwrap(),
            pins: TempPinRoot::new(&format!("capture-{tag}")),
            dir: tempfile::tempdir().unwrap(),
        };
        let policy = veth.dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        let out = veth
            .cli()
            .args([
                "attach",
                "--iface",
                SBC_IF,
                "--xdp-mode",
                "native",
                "--policy",
            ])
            .arg(&policy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        veth
    }

    fn cli(&self) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--netns", self.lab.sbc.name()]);
        command
    }

    fn target(&self) -> Target {
        Target::new(SBC_IF, Some(self.lab.sbc.name()), self.pins.path()).unwrap()
    }

    /// Starts `sipguard capture` and waits until the kernel copies for it.
    fn capture(&self, file: &Path, args: &[&str]) -> Running {
        let child = self
            .cli()
            .args(["capture", "--iface", SBC_IF, "-w"])
            .arg(file)
            .args(["--duration", "60s"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let running = Running(child);
        let target = self.target();
        assert!(
            wait_until(Duration::from_secs(20), || {
                capture::control(&target, capture_slot::LIVE)
                    .is_ok_and(|c| c.owner_pid == pid && c.expires_ns != 0)
            }),
            "the capture started"
        );
        running
    }

    fn send(&self, source: IpAddr, count: usize) {
        let dest = SocketAddr::new(Lab::sbc_addr(source.is_ipv6()), 5060);
        self.lab
            .peer
            .run(move || send_udp(source, dest, count, OPTIONS))
            .unwrap()
            .unwrap();
    }
}

/// Waits for a capture to end by itself (its --count); its standard error.
fn finish(mut running: Running) -> String {
    assert!(
        wait_until(Duration::from_secs(30), || running
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "the capture ended after its --count"
    );
    let status = running.0.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read as _;
    if let Some(mut pipe) = running.0.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    assert!(status.success(), "{stderr}");
    stderr
}

/// `tshark -r FILE -T fields` with the comment, SIP method and source of every packet.
fn tshark(file: &Path) -> Vec<[String; 3]> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.comment",
            "-e",
            "sip.Method",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
        ])
        .output()
        .expect("tshark (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let source = if fields[2].is_empty() {
                fields[3]
            } else {
                fields[2]
            };
            [
                fields[0].to_string(),
                fields[1].to_string(),
                source.to_string(),
            ]
        })
        .collect()
}

#[test]
fn sipguard_capture_writes_pcapng_that_tshark_reads_with_the_verdicts() {
    let veth = Veth::new("capture");
    // Drops of one reason, IPv4 and IPv6.
    let file = veth.dir.path().join("drops.pcapng");
    let capture = veth.capture(&file, &["--count", "4", "--reason", "not_allowlisted"]);
    veth.send(ALLOWED_V4.into(), 3);
    veth.send(UNKNOWN_V4.into(), 2);
    veth.send(UNKNOWN_V6.into(), 2);
    let stderr = finish(capture);
    assert!(stderr.contains("4 packets written"), "{stderr}");
    let packets = tshark(&file);
    assert_eq!(packets.len(), 4, "{packets:?}");
    for [comment, method, _] in &packets {
        assert_eq!(
            comment,
            "sipguard: outcome=dropped reason=not_allowlisted zone=trunk"
        );
        assert_eq!(method, "OPTIONS");
    }
    let sources: Vec<&str> = packets.iter().map(|p| p[2].as_str()).collect();
    assert_eq!(
        sources,
        [
            "198.18.2.10",
            "198.18.2.10",
            "2001:db8:2::10",
            "2001:db8:2::10"
        ]
    );

    // Passed packets of the carrier only (--src), with --include-passed.
    let file = veth.dir.path().join("carrier.pcapng");
    let capture = veth.capture(
        &file,
        &["--count", "2", "--include-passed", "--src", "198.18.1.0/24"],
    );
    veth.send(UNKNOWN_V4.into(), 2);
    veth.send(ALLOWED_V4.into(), 2);
    finish(capture);
    let packets = tshark(&file);
    assert_eq!(packets.len(), 2, "{packets:?}");
    for [comment, method, source] in &packets {
        assert_eq!(
            comment,
            "sipguard: outcome=passed reason=allowlisted zone=trunk"
        );
        assert_eq!(method, "OPTIONS");
        assert_eq!(source, "198.18.1.10");
    }
}

#[test]
fn the_rolling_ring_of_sipguard_run_is_saved_after_the_fact() {
    let veth = Veth::new("ring");
    let listen = "127.0.0.1:9973";
    let daemon = Running(
        veth.cli()
            .args([
                "run",
                "--iface",
                SBC_IF,
                "--no-attach",
                "--listen",
                listen,
                "--capture-ring-bytes",
                "1000000",
                "--capture-ring-minutes",
                "10",
            ])
            .arg("--events")
            .arg(veth.dir.path().join("events.jsonl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let target = veth.target();
    assert!(
        wait_until(Duration::from_secs(20), || {
            capture::control(&target, capture_slot::ROLLING).is_ok_and(|c| c.expires_ns != 0)
        }),
        "the daemon turned the rolling slot on"
    );
    veth.send(UNKNOWN_V4.into(), 3);
    veth.send(ALLOWED_V4.into(), 3);
    veth.send(sipguard_tests::lab::DENIED_V4.into(), 2);
    let file = veth.dir.path().join("ring.pcapng");
    // The daemon drains its ring every 200 ms: ask until all 5 drops are there.
    let mut packets = Vec::new();
    let saved = wait_until(Duration::from_secs(20), || {
        let out = veth
            .cli()
            .args(["capture", "--from-ring", "--listen", listen, "-w"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        packets = tshark(&file);
        packets.len() >= 5
    });
    assert!(saved, "{packets:?}");
    assert_eq!(packets.len(), 5, "drops only: {packets:?}");
    // A reason filter when saving.
    let out = veth
        .cli()
        .args([
            "capture",
            "--from-ring",
            "--listen",
            listen,
            "--reason",
            "denylisted",
            "-w",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets = tshark(&file);
    assert_eq!(packets.len(), 2, "{packets:?}");
    for [comment, method, source] in &packets {
        assert_eq!(
            comment,
            "sipguard: outcome=dropped reason=denylisted zone=trunk"
        );
        assert_eq!(method, "OPTIONS");
        assert_eq!(source, "198.18.66.10");
    }
    let status = veth
        .cli()
        .args(["status", "--iface", SBC_IF])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("  ring        on (pid") && status.contains("copied 5 ("),
        "{status}"
    );
    // Stopped, the daemon turns its slot off (it does not wait for the lease).
    let mut daemon = daemon;
    // SAFETY: our child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    assert!(
        wait_until(Duration::from_secs(20), || daemon
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "the daemon stops on SIGTERM"
    );
    assert_eq!(
        capture::control(&target, capture_slot::ROLLING)
            .unwrap()
            .expires_ns,
        0
    );
}
