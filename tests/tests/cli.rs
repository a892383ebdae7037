//! The `sipguard` binary against real interfaces: the filter outlives the controller, re-attach
//! and policy changes have no gap, bad input changes nothing.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sipguard::{
    policy::Prefix,
    report::Stats,
    state::{List, State, Target},
};
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    lab::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, Lab, SBC_IF, UNKNOWN_V4, UdpCounter},
    pins::TempPinRoot,
    sipguard_bin,
};

const PAYLOAD: &[u8] =
    b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// Policy B keeps the classification of every lab source of the example policy (A) but changes
/// everything around them.
const POLICY_B: &str = r#"
mode = "enforce"
fragments = "source"
[trunk]
udp = [5060, 5080]
tcp = [5060, 5061, 5062]
[[allow]]
name = "carrier-a"
cidrs = ["198.18.1.0/24", "2001:db8:1::/48", "10.0.0.0/8", "2001:db8:aaaa::/48"]
[[allow]]
name = "carrier-b"
files = ["carrier-b.txt"]
[[deny]]
cidrs = ["198.18.66.0/24", "2001:db8:66::/48", "192.0.2.0/24"]
"#;

struct Cli {
    pins: PathBuf,
    netns: String,
}

impl Cli {
    fn new(lab: &Lab, pins: &TempPinRoot) -> Cli {
        Cli {
            pins: pins.path().to_path_buf(),
            netns: lab.sbc.name().to_string(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(&self.pins)
            .args(["--netns", &self.netns])
            .args(args)
            .output()
            .expect("run sipguard")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "sipguard {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn status(&self) -> serde_json::Value {
        let text = self.ok(&["status", "--iface", SBC_IF, "--json"]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
    }

    fn target(&self) -> Target {
        Target::new(SBC_IF, Some(&self.netns), &self.pins).expect("valid names")
    }

    fn stats(&self) -> Stats {
        Stats::read(&State::open(&self.target()).unwrap()).unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Streams datagrams from each source to the SBC's `port` until `stop`, at a bounded pace;
/// returns how many each sent.
fn stream(
    lab: &Lab,
    port: u16,
    sources: Vec<IpAddr>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(IpAddr, usize)>> {
    lab.peer
        .spawn(move || {
            let sockets: Vec<(IpAddr, UdpSocket)> = sources
                .iter()
                .map(|s| (*s, UdpSocket::bind(SocketAddr::new(*s, 0)).unwrap()))
                .collect();
            let mut sent = vec![0usize; sockets.len()];
            // At most 60 s and 30,000 rounds, whatever happens to the stop flag.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            for _ in 0..30_000 {
                if stop.load(Ordering::Relaxed) || std::time::Instant::now() > deadline {
                    break;
                }
                for (i, (source, socket)) in sockets.iter().enumerate() {
                    let dest = SocketAddr::new(Lab::sbc_addr(source.is_ipv6()), port);
                    if socket.send_to(PAYLOAD, dest).is_ok() {
                        sent[i] += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            sources.into_iter().zip(sent).collect()
        })
        .unwrap()
}

#[test]
fn filtering_outlives_the_controller_and_reattach_swaps_without_a_gap() {
    let lab = Lab::new("reattach").unwrap();
    let pins = TempPinRoot::new("cli-reattach");
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", sipguard::policy::EXAMPLE_POLICY);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        &policy,
        "--xdp-mode",
        "native",
    ]);
    let first = cli.status();
    assert_eq!(first["attached"], true);
    assert_eq!(first["xdp_mode"], "native");

    let listener = UdpCounter::start(&lab.sbc, 5060).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = stream(
        &lab,
        5060,
        vec![ALLOWED_V4.into(), UNKNOWN_V4.into()],
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut program_ids = vec![first["link"]["program_id"].as_u64().unwrap()];
    for _ in 0..5 {
        // No --policy: the pinned policy and counters are kept, only the program is swapped.
        cli.ok(&["attach", "--iface", SBC_IF]);
        let status = cli.status();
        assert_eq!(
            status["link"]["link_id"], first["link"]["link_id"],
            "same link, new program"
        );
        program_ids.push(status["link"]["program_id"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let received = listener.finish(Duration::from_millis(300));

    program_ids.dedup();
    assert_eq!(
        program_ids.len(),
        6,
        "every attach loaded a new program: {program_ids:?}"
    );
    let (allowed_sent, unknown_sent) = (sent[0].1, sent[1].1);
    assert!(allowed_sent > 100, "the stream ran across the re-attaches");
    assert_eq!(
        received.get(&ALLOWED_V4.into()),
        Some(&allowed_sent),
        "no allowed datagram lost"
    );
    assert_eq!(
        received.get(&UNKNOWN_V4.into()),
        None,
        "no unknown datagram admitted"
    );
    let stats = cli.stats();
    assert_eq!(
        stats.get(Zone::Trunk, Reason::Allowlisted, false).packets,
        allowed_sent as u64
    );
    assert_eq!(
        stats
            .get(Zone::Trunk, Reason::NotAllowlisted, false)
            .packets,
        unknown_sent as u64
    );

    // Detach: the SBC is unprotected again, and the state is gone.
    cli.ok(&["detach", "--iface", SBC_IF]);
    assert!(!cli.target().dir().exists());
    let listener = UdpCounter::start(&lab.sbc, 5060).unwrap();
    let dest = SocketAddr::new(Lab::sbc_addr(false), 5060);
    lab.peer
        .run(move || sipguard_tests::lab::send_udp(UNKNOWN_V4.into(), dest, 10, PAYLOAD))
        .unwrap()
        .unwrap();
    assert_eq!(
        listener
            .finish(Duration::from_millis(200))
            .get(&UNKNOWN_V4.into()),
        Some(&10)
    );
}

#[test]
fn hundred_policy_applications_under_traffic_keep_every_classification() {
    let lab = Lab::new("apply").unwrap();
    let pins = TempPinRoot::new("cli-apply");
    let dir = tempfile::tempdir().unwrap();
    let policy_a = write(dir.path(), "a.toml", sipguard::policy::EXAMPLE_POLICY);
    write(
        dir.path(),
        "carrier-b.txt",
        "# carrier B\n203.0.113.0/25\n2001:db8:bbbb::/48\n",
    );
    let policy_b = write(dir.path(), "b.toml", POLICY_B);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        &policy_a,
        "--xdp-mode",
        "native",
    ]);

    let listener = UdpCounter::start(&lab.sbc, 5060).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sources: Vec<IpAddr> = vec![
        ALLOWED_V4.into(),
        ALLOWED_V6.into(),
        DENIED_V4.into(),
        DENIED_V6.into(),
    ];
    let sender = stream(&lab, 5060, sources, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    for round in 0..100 {
        let file = if round % 2 == 0 { &policy_b } else { &policy_a };
        cli.ok(&["apply", "--iface", SBC_IF, file]);
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let received = listener.finish(Duration::from_millis(300));

    let status = cli.status();
    assert_eq!(status["serial"], 101, "one attach plus 100 applications");
    assert_eq!(
        status["policy_file"],
        policy_a.as_str(),
        "the last file applied (round 99) was A"
    );
    for (source, count) in &sent {
        assert!(*count > 50, "{source} kept sending during the applications");
        let got = received.get(source).copied().unwrap_or(0);
        if [IpAddr::from(ALLOWED_V4), ALLOWED_V6.into()].contains(source) {
            assert_eq!(
                got, *count,
                "every datagram from allowlisted {source} arrived"
            );
        } else {
            assert_eq!(got, 0, "no datagram from denylisted {source} arrived");
        }
    }
    let stats = cli.stats();
    let denied_sent = (sent[2].1 + sent[3].1) as u64;
    assert_eq!(
        stats.get(Zone::Trunk, Reason::Denylisted, false).packets,
        denied_sent
    );
}

/// Everything the kernel holds for an interface, both generations, as comparable text.
fn snapshot(target: &Target) -> String {
    let state = State::open(target).unwrap();
    let mut text = format!(
        "active {}\nmeta {:?}\n",
        state.active_generation().unwrap(),
        state.meta().unwrap()
    );
    for generation in 0..2 {
        let policy = state.policy(generation).unwrap();
        text += &format!("gen {generation} header {:?}\n", policy.header);
        text += &format!(
            "udp {:?}\ntcp {:?}\n",
            policy.udp_zone.to_vec(),
            policy.tcp_zone.to_vec()
        );
        for list in [List::Allow, List::Deny] {
            text += &format!("{list:?} {:?}\n", state.rules(generation, list).unwrap());
        }
        text += &format!(
            "sip {:?}\nmethods {:?}\nsignatures {:?}\ndestinations {:?}\n",
            policy.sip,
            policy.class_methods,
            state.signatures(generation).unwrap(),
            state.destinations(generation).unwrap()
        );
    }
    text
}

#[test]
fn bad_policy_files_change_nothing_in_the_kernel() {
    let lab = Lab::new("bad").unwrap();
    let pins = TempPinRoot::new("cli-bad");
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", sipguard::policy::EXAMPLE_POLICY);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&["attach", "--iface", SBC_IF, "--policy", &good]);
    cli.ok(&["apply", "--iface", SBC_IF, &good]);
    cli.ok(&["allow", "add", "--iface", SBC_IF, "192.0.2.55"]);
    let before = snapshot(&cli.target());

    write(
        dir.path(),
        "bad-list.txt",
        "198.51.100.0/24\n198.51.100.300\n",
    );
    let cases = [
        (
            "cidr.toml",
            "[[allow]]\ncidrs = [\"198.18.1.0/24\", \"198.18.1.1/24\"]\n",
            "cidr.toml:2:",
        ),
        (
            "key.toml",
            "mode = \"enforce\"\nallowlist = []\n",
            "key.toml:2: unknown field `allowlist`",
        ),
        (
            "missing.toml",
            "[[deny]]\nfiles = [\"nope.txt\"]\n",
            "missing.toml:2: cannot read list file",
        ),
        (
            "list.toml",
            "[[allow]]\nfiles = [\"bad-list.txt\"]\n",
            "bad-list.txt:2: '198.51.100.300'",
        ),
        (
            "conflict.toml",
            "[[allow]]\ncidrs = [\"198.18.9.9\"]\n[[deny]]\ncidrs = [\"198.18.9.9\"]\n",
            "conflict.toml:4:",
        ),
        ("syntax.toml", "[[allow]\ncidrs = []\n", "syntax.toml:1:"),
        (
            "port.toml",
            "[trunk]\nudp = [5060, 0]\n",
            "port.toml:2: udp port 0",
        ),
        (
            "digits.toml",
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"x\"\nprefixes = [\"+44\", \"09x\"]\naction = \"deny\"\n",
            "digits.toml:5: non-digit prefix '09x'",
        ),
        (
            "country.toml",
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"x\"\ncountries = [\"XY\"]\naction = \"deny\"\n",
            "country.toml:5: unknown country 'XY'",
        ),
        (
            "twice.toml",
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"a\"\nprefixes = [\"881\"]\naction = \"deny\"\n[[access.destinations]]\nname = \"b\"\nprefixes = [\"+881\"]\naction = \"allow\"\n",
            "twice.toml:9: duplicate destination prefix",
        ),
        (
            "nozone.toml",
            "[trunk]\nudp = [5060]\n[[access.destinations]]\nname = \"x\"\nprefixes = [\"881\"]\naction = \"deny\"\n",
            "destination rules for the access zone, which has no ports",
        ),
        (
            "budget.toml",
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"x\"\nprefixes = [\"1\"]\naction = \"abroad\"\n",
            "budget.toml:6: action 'abroad'",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, text);
        let output = cli.run(&["apply", "--iface", SBC_IF, &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains("nothing was applied"), "{stderr}");
        assert_eq!(
            snapshot(&cli.target()),
            before,
            "{name} changed the kernel state"
        );
    }
    let output = cli.run(&["apply", "--iface", SBC_IF, "/nonexistent/policy.toml"]);
    assert_eq!(output.status.code(), Some(3));
    // `dial` judges with the generation in force (the example policy) as the kernel does, and
    // with a file as `apply` would.
    for (number, normalised, rule, action) in [
        ("+881 6123 45678", "881612345678", "satellite", "deny"),
        ("9 020 7946 0000", "442079460000", "uk", "allow"),
        ("0044 (0)", "440", "uk", "allow"),
        (
            "00 1 212 555 0100",
            "12125550100",
            "access-default",
            "budget #0",
        ),
    ] {
        let verdict: serde_json::Value = serde_json::from_str(&cli.ok(&[
            "dial", "--iface", SBC_IF, "--zone", "access", number, "--json",
        ]))
        .unwrap();
        assert_eq!(verdict["normalised"], normalised, "{number}: {verdict}");
        assert_eq!(verdict["rule"], rule, "{number}");
        assert_eq!(verdict["action"], action, "{number}");
    }
    let from_file: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "dial",
        "--policy",
        &good,
        "--zone",
        "access",
        "sip:alice@sbc",
        "--json",
    ]))
    .unwrap();
    assert_eq!(from_file["rule"], "access-unparseable");
    assert_eq!(from_file["action"], "deny");
    assert!(from_file["normalised"].is_null());
    // A refused runtime change is all or nothing as well.
    let output = cli.run(&[
        "allow",
        "del",
        "--iface",
        SBC_IF,
        "192.0.2.55",
        "192.0.2.56",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("192.0.2.56/32"));
    let output = cli.run(&["deny", "add", "--iface", SBC_IF, "192.0.2.0/33"]);
    assert_eq!(output.status.code(), Some(2), "clap rejects a bad CIDR");
    assert_eq!(snapshot(&cli.target()), before);
}

#[test]
fn runtime_entries_act_at_once_and_survive_apply() {
    let lab = Lab::new("runtime").unwrap();
    let pins = TempPinRoot::new("cli-runtime");
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", sipguard::policy::EXAMPLE_POLICY);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&["attach", "--iface", SBC_IF, "--policy", &policy]);

    let send_unknown = |count: usize| {
        let listener = UdpCounter::start(&lab.sbc, 5060).unwrap();
        let dest = SocketAddr::new(Lab::sbc_addr(false), 5060);
        lab.peer
            .run(move || sipguard_tests::lab::send_udp(UNKNOWN_V4.into(), dest, count, PAYLOAD))
            .unwrap()
            .unwrap();
        listener
            .finish(Duration::from_millis(200))
            .get(&UNKNOWN_V4.into())
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(send_unknown(5), 0);
    cli.ok(&["allow", "add", "--iface", SBC_IF, "198.18.2.0/24"]);
    assert_eq!(
        send_unknown(6),
        6,
        "a runtime allow entry acts on the next packet"
    );
    cli.ok(&["apply", "--iface", SBC_IF, &policy]);
    assert_eq!(send_unknown(7), 7, "runtime entries survive apply");
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["allow", "list", "--iface", SBC_IF, "--json"])).unwrap();
    let runtime: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["origin"] == "runtime")
        .map(|row| row["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(runtime, ["198.18.2.0/24"]);
    cli.ok(&["deny", "add", "--iface", SBC_IF, "198.18.2.10"]);
    assert_eq!(send_unknown(4), 0, "deny beats allow");
    cli.ok(&["deny", "del", "--iface", SBC_IF, "198.18.2.10"]);
    cli.ok(&["allow", "del", "--iface", SBC_IF, "198.18.2.0/24"]);
    assert_eq!(send_unknown(3), 0);

    cli.ok(&["mode", "--iface", SBC_IF, "monitor"]);
    assert_eq!(cli.ok(&["mode", "--iface", SBC_IF]).trim(), "monitor");
    assert_eq!(send_unknown(8), 8, "monitor mode passes");
    let stats = cli.stats();
    assert_eq!(
        stats.get(Zone::Trunk, Reason::NotAllowlisted, true).packets,
        8
    );
    assert_eq!(
        stats
            .get(Zone::Trunk, Reason::NotAllowlisted, false)
            .packets,
        5 + 3
    );
    assert_eq!(stats.get(Zone::Trunk, Reason::Denylisted, false).packets, 4);

    let state = State::open(&cli.target()).unwrap();
    let allow = state
        .rules(state.active_generation().unwrap(), List::Allow)
        .unwrap();
    assert!(!allow.contains_key(&Prefix::from(
        "198.18.2.0/24".parse::<ipnet::IpNet>().unwrap()
    )));
}

#[test]
fn state_from_an_incompatible_build_is_refused_and_left_alone() {
    let lab = Lab::new("compat").unwrap();
    let pins = TempPinRoot::new("cli-compat");
    let cli = Cli::new(&lab, &pins);
    let dir = cli.target().dir();
    std::fs::create_dir_all(&dir).unwrap();
    let meta_pin = dir.join("SG_META");
    // A SG_META whose value is 8 bytes instead of this build's 48.
    sipguard_tests::netns::run(
        "bpftool",
        &[
            "map",
            "create",
            meta_pin.to_str().unwrap(),
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "1",
            "name",
            "SG_META",
        ],
    )
    .unwrap();
    let output = cli.run(&["attach", "--iface", SBC_IF]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("incompatible sipguard build"), "{stderr}");
    assert!(stderr.contains("SG_META"), "{stderr}");
    let remaining: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(
        remaining.len(),
        1,
        "nothing was created beside the foreign map"
    );
    assert!(
        !lab.sbc
            .ip(&["link", "show", SBC_IF])
            .unwrap()
            .contains("xdp"),
        "not attached"
    );
    // detach clears it so that a fresh attach works.
    cli.ok(&["detach", "--iface", SBC_IF]);
    cli.ok(&["attach", "--iface", SBC_IF]);
    assert_eq!(
        cli.status()["mode"],
        "monitor",
        "a fresh attach starts in monitor mode"
    );
}

#[test]
fn feedback_commands_reject_bad_arguments_before_touching_anything() {
    let pins = TempPinRoot::new("cli-feedback-args");
    let run = |args: &[&str]| {
        let output = Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(pins.path())
            .args(args)
            .output()
            .expect("run sipguard");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (args, says) in [
        (&["strike", "not-an-ip"][..], "not an IP address"),
        (&["strike", "198.18.3.12", "--count", "0"], "--count"),
        (&["strike", "198.18.3.12", "--count", "1001"], "--count"),
        (
            &["strike", "198.18.3.12", "--reason", "scanner"],
            "auth_failures",
        ),
        (&["sources"], "--verified"),
        (
            &["sources", "--verified", "--auth-failures"],
            "cannot be used with",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(pins.path()).map_or(0, Iterator::count),
        0,
        "nothing was created"
    );
}

#[test]
fn strikes_ban_unknown_clients_at_the_threshold_and_never_allowlisted_ones() {
    let lab = Lab::new("strike").unwrap();
    let pins = TempPinRoot::new("cli-strike");
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", sipguard::policy::EXAMPLE_POLICY);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&["attach", "--iface", SBC_IF, "--policy", &policy]);
    let status = cli.status();
    assert_eq!(
        status["feedback"]["auth_failures"]["threshold"], 10,
        "{status}"
    );
    assert_eq!(status["feedback"]["verified_sources"], 0, "{status}");
    assert!(status["egress"]["attached"].is_boolean(), "{status}");

    // Phones in the access zone (UDP 5070) pass until their client is banned (MESSAGE: a
    // method without a budget of its own in the example's phones class).
    const MESSAGE: &[u8] =
        b"MESSAGE sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    let send_unknown = |count: usize| {
        let listener = UdpCounter::start(&lab.sbc, 5070).unwrap();
        let dest = SocketAddr::new(Lab::sbc_addr(false), 5070);
        lab.peer
            .run(move || sipguard_tests::lab::send_udp(UNKNOWN_V4.into(), dest, count, MESSAGE))
            .unwrap()
            .unwrap();
        listener
            .finish(Duration::from_millis(200))
            .get(&UNKNOWN_V4.into())
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(send_unknown(5), 5);
    let unknown = UNKNOWN_V4.to_string();
    let line = cli.ok(&["strike", "--iface", SBC_IF, &unknown, "--count", "3"]);
    assert_eq!(
        line.trim(),
        format!("{unknown}: 3/10 auth failures in the current window")
    );
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sources", "--iface", SBC_IF, "--auth-failures", "--json"]))
            .unwrap();
    assert_eq!(listed[0]["address"], unknown.as_str(), "{listed}");
    assert_eq!(listed[0]["failures"], 3, "{listed}");
    assert_eq!(send_unknown(5), 5, "below the threshold nothing changes");
    let outcome: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "strike",
        "--iface",
        SBC_IF,
        &unknown,
        "--reason",
        "auth_failures",
        "--count",
        "7",
        "--json",
    ]))
    .unwrap();
    assert_eq!(outcome["banned"], true, "{outcome}");
    assert_eq!(
        (outcome["failures"].as_u64(), outcome["threshold"].as_u64()),
        (Some(10), Some(10))
    );
    let bans: serde_json::Value =
        serde_json::from_str(&cli.ok(&["bans", "list", "--iface", SBC_IF, "--json"])).unwrap();
    assert_eq!(bans[0]["source"], unknown.as_str(), "{bans}");
    assert_eq!(bans[0]["reason"], "auth_failures", "{bans}");
    assert_eq!(send_unknown(5), 0, "the ban bites at once");

    // An allowlisted peer is never banned automatically.
    let allowed = ALLOWED_V4.to_string();
    let line = cli.ok(&["strike", "--iface", SBC_IF, &allowed, "--count", "1000"]);
    assert!(line.contains("allowlisted"), "{line}");
    let bans: serde_json::Value =
        serde_json::from_str(&cli.ok(&["bans", "list", "--iface", SBC_IF, "--json"])).unwrap();
    assert_eq!(bans.as_array().unwrap().len(), 1, "{bans}");
    assert!(
        cli.ok(&["sources", "--iface", SBC_IF, "--verified"])
            .contains("no verified sources")
    );

    // With auth-failure bans off, a strike is refused.
    let off = write(
        dir.path(),
        "off.toml",
        &format!(
            "{}\n",
            sipguard::policy::EXAMPLE_POLICY.replace("threshold = 10 ", "threshold = 0 ")
        ),
    );
    cli.ok(&["apply", "--iface", SBC_IF, &off]);
    assert!(cli.status()["feedback"]["auth_failures"].is_null());
    let output = cli.run(&["strike", "--iface", SBC_IF, "198.18.3.12"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("auth-failure bans are off"), "{stderr}");
}

/// The access zone open to anyone (budgets no stream exhausts), the carrier allowlisted.
const LOCKDOWN_POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 100000, burst = 100000 }
[classes]
phones = { rate = 100000, burst = 100000 }
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24"]
"#;

/// Streams from `sources` to the access port for `millis`, then stops; how many each sent.
fn burst(lab: &Lab, sources: Vec<IpAddr>, millis: u64) -> Vec<(IpAddr, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let sender = stream(lab, 5070, sources, stop.clone());
    std::thread::sleep(Duration::from_millis(millis));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap()
}

/// The active generation's policy value, as bytes.
fn active_policy_bytes(cli: &Cli) -> Vec<u8> {
    let state = State::open(&cli.target()).unwrap();
    let mut policy = state.policy(state.active_generation().unwrap()).unwrap();
    // Every change counts in the serial; the rest must be what it was.
    policy.header.serial = 0;
    // SAFETY: a plain repr(C) value, read as the bytes it is made of.
    unsafe {
        std::slice::from_raw_parts(
            (&*policy as *const sipguard_common::abi::Policy).cast::<u8>(),
            std::mem::size_of::<sipguard_common::abi::Policy>(),
        )
    }
    .to_vec()
}

#[test]
fn lockdown_switches_under_traffic_losing_nothing_allowlisted_and_admitting_nothing_unknown() {
    let lab = Lab::new("lockdown").unwrap();
    let pins = TempPinRoot::new("cli-lockdown");
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", LOCKDOWN_POLICY);
    let cli = Cli::new(&lab, &pins);
    cli.ok(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        &policy,
        "--xdp-mode",
        "native",
    ]);
    assert_eq!(cli.ok(&["lockdown", "--iface", SBC_IF]).trim(), "off");
    let before = active_policy_bytes(&cli);

    let listener = UdpCounter::start(&lab.sbc, 5070).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The carrier streams across both switches.
    let carrier = stream(&lab, 5070, vec![ALLOWED_V4.into()], stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    // Open: an unknown source gets in.
    let open_before = burst(&lab, vec![UNKNOWN_V4.into()], 150);
    cli.ok(&["lockdown", "on", "--iface", SBC_IF]);
    assert_eq!(cli.status()["lockdown"], "allowlisted+verified");
    // Locked: another unknown source gets nothing in.
    let locked = burst(&lab, vec![DENIED_V4.into()], 150);
    // A runtime entry made during the lockdown is admitted at once, and kept.
    cli.ok(&["allow", "add", "--iface", SBC_IF, "198.18.2.0/24"]);
    cli.ok(&["lockdown", "off", "--iface", SBC_IF]);
    let open_after = burst(&lab, vec![ALLOWED_V6.into()], 150);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let carrier = carrier.join().unwrap();
    let received = listener.finish(Duration::from_millis(300));

    let got = |addr: IpAddr| received.get(&addr).copied().unwrap_or(0);
    assert!(
        carrier[0].1 > 100,
        "the carrier streamed across the switches"
    );
    assert_eq!(
        got(ALLOWED_V4.into()),
        carrier[0].1,
        "no carrier datagram lost"
    );
    assert!(open_before[0].1 > 0 && locked[0].1 > 0 && open_after[0].1 > 0);
    assert_eq!(got(UNKNOWN_V4.into()), open_before[0].1, "admitted before");
    assert_eq!(
        got(DENIED_V4.into()),
        0,
        "nothing unknown admitted while locked"
    );
    assert_eq!(
        got(ALLOWED_V6.into()),
        open_after[0].1,
        "admitted again after"
    );
    assert_eq!(
        cli.stats()
            .get(Zone::Access, Reason::Lockdown, false)
            .packets,
        locked[0].1 as u64,
        "every locked-out datagram counted as lockdown"
    );
    // Off brought back exactly the policy in force before; the runtime entry made meanwhile
    // is still there.
    assert!(
        active_policy_bytes(&cli) == before,
        "the policy after `lockdown off` differs from the one before"
    );
    assert_eq!(cli.ok(&["lockdown", "--iface", SBC_IF]).trim(), "off");
    assert!(
        cli.ok(&["allow", "list", "--iface", SBC_IF])
            .contains("198.18.2.0/24"),
        "the runtime entry is kept"
    );
}
