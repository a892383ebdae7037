//! The access gate (`[access] unverified`, `sipguard attack-mode`) on the real program under
//! `BPF_PROG_TEST_RUN`: while it is shut, sources neither allowlisted nor verified may send
//! only what a registration needs, and what it shuts out spends no budget and makes no state,
//! so a phone never seen before still registers during a spoofed flood.

use std::net::Ipv4Addr;

use sipguard::live::LiveError;
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    frames::Packet,
    harness::{TestFilter, Verdict, drain_events, drop, pass},
};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
const NEW_PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 20);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 99);

/// Small budgets: a flood that spent them would show.
const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
new_sources = { rate = 1, burst = 3 }
unverified = "always"
[classes]
phones = { rate = 1, burst = 4 }
registered = { rate = 1000, burst = 1000 }
[verified]
class = "registered"
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24"]
"#;

fn request(src: Ipv4Addr, method: &str) -> Vec<u8> {
    let text = format!("{method} sip:sbc SIP/2.0\r\nCSeq: 1 {method}\r\n\r\n");
    Packet::udp4(src, SBC, 5062, 5070, text.into_bytes()).build()
}

/// The SBC's 200 OK to the phone's REGISTER: the phone becomes a verified source.
fn verify(filter: &mut TestFilter, phone: Ipv4Addr) {
    let ok = b"SIP/2.0 200 OK\r\nCSeq: 2 REGISTER\r\nExpires: 600\r\n\r\n";
    filter.run_egress(
        &Packet::udp4(SBC, phone, 5070, 5062, ok.to_vec()).build(),
        1,
    );
}

fn expect(filter: &mut TestFilter, cases: &[(Ipv4Addr, &str, Verdict)]) {
    for (source, method, verdict) in cases {
        assert_eq!(
            filter.run(&request(*source, method)),
            *verdict,
            "{method} from {source}"
        );
    }
}

#[test]
fn the_shut_gate_admits_only_registrations_from_unverified_sources_and_spends_nothing_on_the_rest()
{
    let mut filter = TestFilter::new(POLICY);
    verify(&mut filter, PHONE);
    let unverified = drop(Zone::Access, Reason::Unverified);
    expect(
        &mut filter,
        &[
            (STRANGER, "INVITE", unverified),
            (STRANGER, "OPTIONS", unverified),
            (STRANGER, "SUBSCRIBE", unverified),
            (STRANGER, "MESSAGE", unverified),
            (STRANGER, "BYE", unverified),
            (STRANGER, "SIP/2.0 200 OK\r\nX:", unverified),
            // The verified phone and the allowlisted carrier are not touched.
            (PHONE, "INVITE", pass(Zone::Access, Reason::Verified)),
            (PHONE, "OPTIONS", pass(Zone::Access, Reason::Verified)),
            (PHONE, "SUBSCRIBE", pass(Zone::Access, Reason::Verified)),
            (CARRIER, "INVITE", pass(Zone::Access, Reason::Allowlisted)),
        ],
    );
    // A CRLF keep-alive over UDP is no registration.
    let keepalive = Packet::udp4(STRANGER, SBC, 5062, 5070, b"\r\n\r\n".to_vec()).build();
    assert_eq!(filter.run(&keepalive), unverified);

    // A spoofed flood of OPTIONS from 500 sources: no state, no new-source budget spent.
    let tracked = filter.loaded.state.budget_entries();
    for i in 0..500u32 {
        let source = Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8);
        assert_eq!(filter.run(&request(source, "OPTIONS")), unverified);
    }
    assert_eq!(
        filter.loaded.state.budget_entries(),
        tracked,
        "no state for the flood"
    );

    // A phone never seen before registers: within its budget (burst 4), then rate limited.
    for _ in 0..4 {
        expect(
            &mut filter,
            &[(
                NEW_PHONE,
                "REGISTER",
                pass(Zone::Access, Reason::AccessAdmitted),
            )],
        );
    }
    expect(
        &mut filter,
        &[(
            NEW_PHONE,
            "REGISTER",
            drop(Zone::Access, Reason::RateLimited),
        )],
    );
    // Before its 200 OK it may not call; after it, everything within the verified class.
    expect(&mut filter, &[(NEW_PHONE, "INVITE", unverified)]);
    verify(&mut filter, NEW_PHONE);
    expect(
        &mut filter,
        &[(NEW_PHONE, "INVITE", pass(Zone::Access, Reason::Verified))],
    );
}

#[test]
fn the_gate_lets_a_tcp_registration_through_but_no_other_request() {
    let mut filter = TestFilter::new(POLICY);
    let syn = Packet::tcp4(STRANGER, SBC, 40000, 5070, Vec::new()).build();
    assert_eq!(filter.run(&syn), pass(Zone::Access, Reason::AccessAdmitted));
    let register = Packet::tcp4(
        STRANGER,
        SBC,
        40000,
        5070,
        b"REGISTER sip:sbc SIP/2.0\r\nCSeq: 1 REGISTER\r\n".to_vec(),
    )
    .build();
    assert_eq!(
        filter.run(&register),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
    // The rest of a message that spans segments has no start line.
    let rest = Packet::tcp4(
        STRANGER,
        SBC,
        40000,
        5070,
        b"Contact: <sip:x>\r\n\r\n".to_vec(),
    )
    .build();
    assert_eq!(
        filter.run(&rest),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
    let invite = Packet::tcp4(
        STRANGER,
        SBC,
        40000,
        5070,
        b"INVITE sip:+44 SIP/2.0\r\n".to_vec(),
    )
    .build();
    assert_eq!(filter.run(&invite), drop(Zone::Access, Reason::Unverified));
}

#[test]
fn attack_mode_shuts_and_opens_the_gate_and_holds_across_apply() {
    let under_attack = POLICY.replace(r#"unverified = "always""#, r#"unverified = "under-attack""#);
    let mut filter = TestFilter::new(&under_attack);
    let open = [(
        STRANGER,
        "OPTIONS",
        pass(Zone::Access, Reason::AccessAdmitted),
    )];
    expect(&mut filter, &open);

    filter.live().set_attack_mode(true, true).unwrap();
    let shut = [(STRANGER, "OPTIONS", drop(Zone::Access, Reason::Unverified))];
    expect(&mut filter, &shut);
    filter.apply(&under_attack);
    expect(&mut filter, &shut);

    filter.live().set_attack_mode(false, true).unwrap();
    expect(&mut filter, &open);

    // A policy that lets unregistered devices send OPTIONS keep-alives.
    filter.apply(&under_attack.replace(
        r#"unverified = "under-attack""#,
        "unverified = \"under-attack\"\nunverified_methods = [\"REGISTER\", \"options\"]",
    ));
    filter.live().set_attack_mode(true, true).unwrap();
    expect(
        &mut filter,
        &[
            (
                STRANGER,
                "OPTIONS",
                pass(Zone::Access, Reason::AccessAdmitted),
            ),
            (STRANGER, "INVITE", drop(Zone::Access, Reason::Unverified)),
        ],
    );
}

#[test]
fn the_gate_cannot_open_against_the_policy_nor_shut_without_verified_sources() {
    let filter = TestFilter::new(POLICY);
    assert!(matches!(
        filter.live().set_attack_mode(false, true),
        Err(LiveError::GateAlwaysShut)
    ));
    let no_verified = TestFilter::new(&POLICY.replace(r#"unverified = "always""#, "").replace(
        "[verified]\nclass = \"registered\"",
        "[verified]\nenabled = false",
    ));
    assert!(matches!(
        no_verified.live().set_attack_mode(true, true),
        Err(LiveError::GateWithoutVerified)
    ));
}

#[test]
fn in_monitor_mode_the_gate_only_counts() {
    let mut filter = TestFilter::new(&POLICY.replace("enforce", "monitor"));
    let verdict = filter.run(&request(STRANGER, "INVITE"));
    assert!(verdict.passed() && verdict.monitored, "{verdict:?}");
    assert_eq!(verdict.reason, Reason::Unverified);
}

#[test]
fn bad_gate_settings_are_refused_with_their_line() {
    let cases = [
        (
            POLICY.replace(r#"unverified = "always""#, r#"unverified = "sometimes""#),
            "one of \"open\", \"under-attack\", \"always\"",
        ),
        (
            POLICY.replace(
                r#"unverified = "always""#,
                "unverified = \"always\"\nunverified_methods = [\"OPTIONS\"]",
            ),
            "must include REGISTER",
        ),
        (
            POLICY.replace(
                r#"unverified = "always""#,
                "unverified = \"always\"\nunverified_methods = [\"REGISTER\", \"FETCH\"]",
            ),
            "'FETCH' is not a SIP request method",
        ),
        (
            POLICY.replace(
                "[verified]\nclass = \"registered\"",
                "[verified]\nenabled = false",
            ),
            "needs [verified] on",
        ),
    ];
    for (text, expected) in cases {
        let error = sipguard::policy::Policy::parse(&text, "gate.toml")
            .expect_err(expected)
            .to_string();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("gate.toml:"), "{error}");
    }
}

/// Through veth with real sockets and the CLI: `attack-mode on` keeps an unknown source's
/// OPTIONS from the SBC's socket while its REGISTERs still arrive, `off` lets them in again,
/// and both switches are journaled.
#[test]
fn attack_mode_through_the_cli_keeps_unverified_requests_from_the_sbc_socket() {
    use std::{process::Command, time::Duration};

    use sipguard_tests::{
        lab::{Lab, SBC_IF, UNKNOWN_V4, UdpCounter},
        pins::TempPinRoot,
        sipguard_bin,
    };

    let lab = Lab::new("gate").unwrap();
    let pins = TempPinRoot::new("access-gate");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let text = POLICY
        .replace(r#"unverified = "always""#, r#"unverified = "under-attack""#)
        .replace("new_sources = { rate = 1, burst = 3 }", "")
        .replace(
            "phones = { rate = 1, burst = 4 }",
            "phones = { rate = 1000, burst = 1000 }",
        );
    std::fs::write(&policy, text).unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(pins.path())
            .args(["--netns", lab.sbc.name(), "--journal-dir"])
            .arg(dir.path().join("journal"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let policy_arg = policy.to_str().unwrap();
    cli(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        policy_arg,
        "--xdp-mode",
        "native",
    ]);
    assert_eq!(
        cli(&["attack-mode", "--iface", SBC_IF]).trim(),
        "open (shuts under attack)"
    );

    let options: &'static [u8] = b"OPTIONS sip:sbc SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let register: &'static [u8] = b"REGISTER sip:sbc SIP/2.0\r\nCSeq: 1 REGISTER\r\n\r\n";
    let received = |sends: &[(&'static [u8], usize)]| {
        let socket = UdpCounter::start(&lab.sbc, 5070).unwrap();
        for (payload, count) in sends {
            lab.send_from(UNKNOWN_V4.into(), 5070, *count, payload);
        }
        socket
            .finish(Duration::from_millis(300))
            .get(&UNKNOWN_V4.into())
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        received(&[(options, 20)]),
        20,
        "open: everything within budget"
    );
    let shut = cli(&["attack-mode", "--iface", SBC_IF, "on"]);
    assert!(shut.contains("shut (forced)"), "{shut}");
    assert_eq!(received(&[(options, 20)]), 0, "shut: no OPTIONS");
    assert_eq!(received(&[(register, 20)]), 20, "shut: every REGISTER");
    let status = cli(&["status", "--iface", SBC_IF]);
    assert!(status.contains("GATE        shut (forced)"), "{status}");
    cli(&["attack-mode", "--iface", SBC_IF, "off"]);
    assert_eq!(received(&[(options, 20)]), 20, "open again");

    let history: serde_json::Value =
        serde_json::from_str(&cli(&["history", "--iface", SBC_IF, "--json"])).unwrap();
    let switches = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] == "attack-mode")
        .count();
    assert_eq!(switches, 2);
    cli(&["detach", "--iface", SBC_IF]);
}

/// `sipguard run` shuts the gate by itself under a spoofed flood that saturates the new-source
/// budget, opens it after the quiet period, and leaves an operator's decision alone until
/// `attack-mode auto`. (Short settings: saturated 1 s, quiet 2 s.)
#[test]
fn the_daemon_shuts_the_gate_under_a_spoofed_flood_and_opens_it_after_the_quiet_period() {
    use std::{
        process::{Command, Stdio},
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Duration,
    };

    use sipguard_tests::{
        lab::{Lab, PEER_IF, SBC_IF, SBC_V4, inject, mac_of, wait_until},
        pins::TempPinRoot,
        sipguard_bin,
    };

    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let lab = Lab::new("gateauto").unwrap();
    let pins = TempPinRoot::new("access-gate-auto");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let text = POLICY
        .replace(r#"unverified = "always""#, r#"unverified = "under-attack""#)
        .replace(
            "new_sources = { rate = 1, burst = 3 }",
            "new_sources = { rate = 5, burst = 5 }",
        )
        .replace(
            "phones = { rate = 1, burst = 4 }",
            "phones = { rate = 1000, burst = 1000 }",
        );
    std::fs::write(&policy, text).unwrap();
    let journal = dir.path().join("journal");
    let events_file = dir.path().join("events.jsonl");
    // The daemon listens on loopback in the SBC's namespace, which is this test's own.
    const LISTEN: &str = "127.0.0.1:9464";
    let get = |path: &str| {
        let path = path.to_string();
        lab.sbc
            .run(move || {
                sipguard::cli::client::get(LISTEN.parse().unwrap(), &path, Duration::from_secs(5))
            })
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    // The gate switches in the event stream: (outcome, who), oldest first.
    let switches = || -> Vec<(String, String)> {
        std::fs::read_to_string(&events_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<sipguard::events::EventRecord>(line).ok())
            .filter(|event| !event.is_drop())
            .map(|event| {
                let detail = event.detail.unwrap_or_default();
                let by = detail
                    .strip_prefix("by the ")
                    .and_then(|rest| rest.split(':').next())
                    .unwrap_or_default()
                    .to_string();
                (event.outcome, by)
            })
            .collect()
    };
    let command = |args: &[&str]| {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(pins.path())
            .args(["--netns", lab.sbc.name(), "--journal-dir"])
            .arg(&journal)
            .args(args);
        command
    };
    let cli = |args: &[&str]| {
        let output = command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let daemon = Running(
        command(&[
            "run",
            "--iface",
            SBC_IF,
            "--policy",
            policy.to_str().unwrap(),
        ])
        .args(["--listen", LISTEN, "--attack-saturated-for", "1s"])
        .args(["--attack-quiet-for", "2s", "--xdp-mode", "native"])
        .arg("--events")
        .arg(&events_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let gate = || {
        command(&["attack-mode", "--iface", SBC_IF])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    assert!(
        wait_until(Duration::from_secs(20), || gate().as_deref()
            == Some("open (shuts under attack)")),
        "the daemon attached: {:?}",
        gate()
    );

    // A spoofed OPTIONS flood from 198.19.x.y, 200 frames every 50 ms, at most 30 s.
    let sbc_mac = mac_of(&lab.sbc, SBC_IF).unwrap();
    let peer_mac = mac_of(&lab.peer, PEER_IF).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = stop.clone();
    let flood = lab
        .peer
        .spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut next = 0u32;
            while !flooding.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let frames: Vec<Vec<u8>> = (0..200)
                    .map(|_| {
                        next = next.wrapping_add(1);
                        let source =
                            std::net::Ipv4Addr::new(198, 19, (next >> 8) as u8, next as u8);
                        Packet::udp4(
                            source,
                            SBC_V4,
                            5062,
                            5070,
                            b"OPTIONS sip:sbc SIP/2.0\r\n\r\n".to_vec(),
                        )
                        .with_macs(peer_mac, sbc_mac)
                        .build()
                    })
                    .collect();
                inject(PEER_IF, &frames).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .unwrap();
    let shut_by_itself = wait_until(Duration::from_secs(20), || {
        gate().as_deref() == Some("shut (under attack)")
    });
    // The operator takes over: the gate stays shut after the flood, whatever the detector sees.
    let forced = cli(&["attack-mode", "--iface", SBC_IF, "on"]);
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(shut_by_itself, "the detector shut the gate: {:?}", gate());
    assert!(forced.contains("shut (forced)"), "{forced}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(gate().as_deref(), Some("shut (forced)"));
    // Back to the detector: quiet, so the gate opens.
    cli(&["attack-mode", "--iface", SBC_IF, "auto"]);
    assert!(
        wait_until(Duration::from_secs(20), || gate().as_deref()
            == Some("open (shuts under attack)")),
        "the detector opened the gate: {:?}",
        gate()
    );
    let history: serde_json::Value =
        serde_json::from_str(&cli(&["history", "--iface", SBC_IF, "--json"])).unwrap();
    let automatic: Vec<&serde_json::Value> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] == "attack-mode (auto)")
        .collect();
    assert_eq!(automatic.len(), 2, "{history:#}");
    assert!(
        automatic
            .iter()
            .all(|change| change["user"] == "sipguard run")
    );
    // The operator shuts it by hand: the daemon reports that switch too, within its second.
    cli(&["attack-mode", "--iface", SBC_IF, "on"]);
    let expected = [
        ("gate_shut", "detector"),
        ("gate_open", "detector"),
        ("gate_shut", "operator"),
    ]
    .map(|(outcome, by)| (outcome.to_string(), by.to_string()));
    assert!(
        wait_until(Duration::from_secs(10), || switches() == expected),
        "the switches in the event stream: {:?}",
        switches()
    );
    let metrics = get("/metrics").expect("metrics");
    for (to, by, count) in [
        ("shut", "detector", 1),
        ("open", "detector", 1),
        ("shut", "operator", 1),
        ("open", "operator", 0),
        ("shut", "policy", 0),
    ] {
        let sample = format!(r#",to="{to}",by="{by}"}} {count}"#);
        assert!(
            metrics.lines().any(|line| {
                line.starts_with("sipguard_access_gate_switches_total{") && line.ends_with(&sample)
            }),
            "{sample} in\n{}",
            metrics
                .lines()
                .filter(|line| line.contains("gate"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    std::mem::drop(daemon);
    cli(&["detach", "--iface", SBC_IF]);
}

/// The judge drops unverified requests before the SIP stage runs, so the handoff still holds
/// the SIP stage's findings on an earlier packet from the same CPU: the drop event must carry
/// this packet's method and no rule or number of that earlier one.
#[test]
fn an_unverified_drop_event_names_its_own_method_and_no_earlier_rule_or_number() {
    let policy = POLICY.replace(
        "[verified]",
        r#"[events]
per_source = { rate = 1000, burst = 1000 }
[access.dialplan]
country_code = "44"
international_prefixes = ["00"]
[[access.destinations]]
name = "premium"
prefixes = ["881"]
action = "deny"
[verified]"#,
    );
    let mut filter = TestFilter::new(&policy);
    verify(&mut filter, PHONE);
    let premium = "INVITE sip:+881612345678@198.18.0.1 SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n";
    let call = Packet::udp4(PHONE, SBC, 5062, 5070, premium.as_bytes().to_vec()).build();
    assert_eq!(
        filter.run(&call),
        drop(Zone::Access, Reason::DestinationDenied)
    );
    assert_eq!(
        filter.run(&request(STRANGER, "OPTIONS")),
        drop(Zone::Access, Reason::Unverified)
    );
    let events = drain_events(&filter.target);
    let found: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.reason.as_str(),
                e.sip_method.as_deref(),
                e.rule.as_deref(),
                e.number.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "destination_denied",
                Some("INVITE"),
                Some("premium"),
                Some("881612345678")
            ),
            ("unverified", Some("OPTIONS"), None, None),
        ]
    );
}
