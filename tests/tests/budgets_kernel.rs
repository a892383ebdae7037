//! Rate budgets, bans and live limits in the real XDP program (BPF_PROG_TEST_RUN). The kernel's
//! clock runs on, so admission is checked against bounds computed from the measured elapsed time,
//! never against a timing guess. The data plane's clock advances once per kernel tick: a span
//! on it may exceed the measured one by a tick at each end ([`clock_slack`]).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use sipguard::state::List;
use sipguard_common::abi::{MAX_SOURCES, Reason, SourceKey, Zone};
use sipguard_tests::{
    frames::{Packet, sip_options_request},
    harness::{TestFilter, XDP_PASS},
    sipguard_bin,
};

const SBC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SBC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);

/// Seconds a span on the data plane's tick clock may exceed the same span measured here: a tick
/// at each end (each CPU anchors the clock on its own).
fn clock_slack() -> f64 {
    2.0 * f64::from(sipguard::policy::kernel_tick_ns()) / 1e9
}

fn frame(src: IpAddr, dport: u16) -> Vec<u8> {
    match src {
        IpAddr::V4(s) => Packet::udp4(s, SBC4, 5060, dport, payload(src, SBC4.into())).build(),
        IpAddr::V6(s) => Packet::udp6(s, SBC6, 5060, dport, payload(src, SBC6.into())).build(),
    }
}

fn payload(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    sip_options_request(
        SocketAddr::new(src, 5060),
        SocketAddr::new(dst, 5060),
        "UDP",
    )
}

fn policy(classes: &str, extra: &str) -> String {
    format!(
        r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = {{ rate = 1000, burst = 2000 }}
[classes]
{classes}
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["192.0.2.0/24", "2001:db8:1::/48"]
{extra}
"#
    )
}

fn packets(filter: &TestFilter, zone: Zone, reason: Reason) -> u64 {
    filter.stats().get(zone, reason, false).packets
}

/// `repeat` runs of one frame in one syscall; returns how long the call took (an upper bound on
/// the kernel time the runs spanned).
fn flood(filter: &mut TestFilter, frame: &[u8], repeat: u32) -> Duration {
    let start = Instant::now();
    filter.run_repeated(frame, repeat);
    start.elapsed()
}

#[test]
fn a_source_far_above_its_rate_gets_about_burst_plus_rate_times_elapsed() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1000, burst = 50 }\ncarrier = { rate = 2000, burst = 100 }",
        "",
    ));
    // An unknown source in the access zone, and an allowlisted carrier on the trunk.
    for (source, dport, admitted_reason, limited_reason, rate, burst) in [
        (
            "198.18.7.7",
            5070,
            Reason::AccessAdmitted,
            Reason::RateLimited,
            1000.0,
            50,
        ),
        (
            "192.0.2.10",
            5060,
            Reason::Allowlisted,
            Reason::PeerRateLimited,
            2000.0,
            100,
        ),
    ] {
        let zone = if dport == 5070 {
            Zone::Access
        } else {
            Zone::Trunk
        };
        let frame = frame(source.parse().unwrap(), dport);
        let elapsed = flood(&mut filter, &frame, 200_000);
        let admitted = packets(&filter, zone, admitted_reason);
        let limited =
            packets(&filter, zone, limited_reason) + packets(&filter, zone, Reason::Banned);
        assert_eq!(
            admitted + limited,
            200_000,
            "{source}: every run counted once"
        );
        let ceiling = burst as f64 + rate * (elapsed.as_secs_f64() + clock_slack()) + 1.0;
        assert!(
            admitted >= burst,
            "{source}: admitted {admitted} < burst {burst}"
        );
        assert!(
            (admitted as f64) <= ceiling,
            "{source}: admitted {admitted} > burst + rate x {elapsed:?} = {ceiling}"
        );
    }
}

#[test]
fn a_source_under_its_rate_loses_nothing() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 100, burst = 3 }\ncarrier = { rate = 100, burst = 3 }",
        "",
    ));
    let phone = frame("198.18.7.8".parse().unwrap(), 5070);
    let carrier = frame("192.0.2.20".parse().unwrap(), 5060);
    // 100/s allows one packet per 10 ms; sleeping 15 ms between packets stays under the rate
    // however slow the machine is (a sleep never returns early).
    for _ in 0..40 {
        assert_eq!(filter.action(&phone), XDP_PASS);
        assert_eq!(filter.action(&carrier), XDP_PASS);
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(packets(&filter, Zone::Access, Reason::AccessAdmitted), 40);
    assert_eq!(packets(&filter, Zone::Trunk, Reason::Allowlisted), 40);
    assert_eq!(filter.stats().dropped.packets, 0);
}

/// One frame whose IPv4 source is patched in place: a million spoofed sources without building
/// a million frames.
struct Spoofer {
    frame: Vec<u8>,
}

impl Spoofer {
    fn new(dport: u16) -> Spoofer {
        Spoofer {
            frame: frame("10.0.0.0".parse().unwrap(), dport),
        }
    }

    fn with_source(&mut self, source: u32) -> &[u8] {
        self.frame[26..30].copy_from_slice(&source.to_be_bytes());
        &self.frame
    }
}

#[test]
fn a_million_spoofed_sources_leave_allowlisted_peers_untouched_and_state_bounded() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 10, burst = 20 }\ncarrier = { rate = 2000, burst = 200 }",
        "",
    ));
    let peers: Vec<Vec<u8>> = (1..=20u8)
        .map(|host| frame(Ipv4Addr::new(192, 0, 2, host).into(), 5060))
        .collect();
    let peer6 = frame("2001:db8:1::5".parse().unwrap(), 5060);
    let mut access = Spoofer::new(5070);
    let mut trunk = Spoofer::new(5060);
    let start = Instant::now();
    let mut peer_runs = 0u64;
    for i in 0..1_000_000u32 {
        // Half the flood on the access port, half on the trunk; sources all distinct.
        if i % 2 == 0 {
            filter.action(access.with_source(0x0a00_0000 + i));
        } else {
            filter.action(trunk.with_source(0x0b00_0000 + i));
        }
        // The peers keep signalling all along, far under their 2000/s budget.
        if i % 10_000 == 0 {
            for peer in peers.iter().chain([&peer6]) {
                assert_eq!(
                    filter.action(peer),
                    XDP_PASS,
                    "peer dropped during the flood (run {i})"
                );
                peer_runs += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    let stats = filter.stats();
    assert_eq!(
        stats.get(Zone::Trunk, Reason::Allowlisted, false).packets,
        peer_runs
    );
    assert_eq!(
        stats
            .get(Zone::Trunk, Reason::PeerRateLimited, false)
            .packets,
        0
    );
    assert_eq!(
        stats
            .get(Zone::Trunk, Reason::NotAllowlisted, false)
            .packets,
        500_000
    );
    let admitted = stats
        .get(Zone::Access, Reason::AccessAdmitted, false)
        .packets;
    let refused = stats
        .get(Zone::Access, Reason::NewSourceLimited, false)
        .packets;
    assert_eq!(admitted + refused, 500_000);
    // State for new sources only within the new-source budget (1000/s, burst 2000, all CPUs).
    let ceiling = 2000.0 + 1000.0 * (elapsed.as_secs_f64() + clock_slack()) + 1.0;
    assert!(
        (admitted as f64) <= ceiling,
        "{admitted} new sources admitted in {elapsed:?}"
    );
    let (tracked_sources, tracked_peers) = filter.loaded.state.budget_entries();
    assert_eq!(
        tracked_sources as u64, admitted,
        "one entry per admitted new source, none for the trunk"
    );
    assert!(tracked_sources <= MAX_SOURCES as usize);
    assert_eq!(tracked_peers, 21, "one bucket per peer, never evicted");
    // Each peer's bucket holds only its own packets: far under budget, TAT close to now.
    let key = SourceKey {
        addr: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        family: 4,
        prefix_len: 32,
        _reserved: [0; 2],
    };
    let state = filter.loaded.state.peer_state(&key).expect("peer bucket");
    assert!(
        state.tat_ns <= sipguard::time::boot_now_ns() + 200 * 500_000,
        "bucket not drained"
    );
}

#[test]
fn ipv6_sources_share_a_budget_per_64_and_not_across() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 3 }\ncarrier = { rate = 1, burst = 1 }",
        "",
    ));
    let start = Instant::now();
    let same: u64 = (1..=12u16)
        .map(|i| {
            filter.action(&frame(
                Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, i).into(),
                5070,
            ))
        })
        .filter(|action| *action == XDP_PASS)
        .count() as u64;
    let elapsed = start.elapsed().as_secs_f64();
    assert!(same >= 3, "the burst of the shared /64");
    assert!(
        same as f64 <= 3.0 + elapsed + clock_slack() + 1.0,
        "12 addresses in one /64 got {same} in {elapsed}s"
    );
    // Twelve different /64s: twelve budgets.
    let distinct = (1..=12u16)
        .map(|net| {
            filter.action(&frame(
                Ipv6Addr::new(0x2001, 0xdb8, 9, net, 0, 0, 0, 1).into(),
                5070,
            ))
        })
        .filter(|action| *action == XDP_PASS)
        .count();
    assert_eq!(distinct, 12);
}

fn cli(filter: &TestFilter, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(filter.target.pin_root())
        .args(args)
        .args(["--iface", filter.target.iface()])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn bans_json(filter: &TestFilter) -> Vec<serde_json::Value> {
    let (code, stdout, stderr) = cli(filter, &["bans", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn auto_bans_trigger_are_listed_expire_and_are_undone_in_bulk() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 2 }\ncarrier = { rate = 1, burst = 1 }",
        "[bans]\nthreshold = 5\nwindow = \"60s\"\nttl = \"3s\"",
    ));
    let attacker = frame("198.18.44.4".parse().unwrap(), 5070);
    filter.run_repeated(&attacker, 30);
    let stats = filter.stats();
    let admitted = stats
        .get(Zone::Access, Reason::AccessAdmitted, false)
        .packets;
    let limited = stats.get(Zone::Access, Reason::RateLimited, false).packets;
    let banned = stats.get(Zone::Access, Reason::Banned, false).packets;
    assert_eq!(admitted + limited + banned, 30);
    assert_eq!(limited, 5, "the fifth over-budget packet triggers the ban");
    assert!(banned >= 20, "then every packet hits the ban: {banned}");

    let bans = bans_json(&filter);
    assert_eq!(bans.len(), 1, "{bans:?}");
    let ban = &bans[0];
    assert_eq!(ban["source"], "198.18.44.4");
    assert_eq!(ban["reason"], "rate_exceeded");
    assert_eq!(ban["hits"], banned);
    assert_eq!(ban["strikes"], 5);
    let (banned_at, expires) = (
        ban["banned_at_unix"].as_u64().unwrap(),
        ban["expires_at_unix"].as_u64().unwrap(),
    );
    assert!((2..=4).contains(&(expires - banned_at)), "ttl 3 s: {ban}");
    assert!(ban["first_seen_unix"].as_u64().unwrap() <= banned_at);
    assert!(ban["last_seen_unix"].as_u64().unwrap() >= banned_at);

    // The kernel lifts it by itself after the TTL, without the controller.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(filter.run(&attacker).reason, Reason::AccessAdmitted);
    assert!(bans_json(&filter).is_empty());

    // Several auto bans and a manual one, then undo everything issued since a time.
    let before = sipguard::time::now_unix();
    for host in 1..=3u8 {
        filter.run_repeated(&frame(Ipv4Addr::new(198, 18, 45, host).into(), 5070), 20);
    }
    let (code, _, stderr) = cli(
        &filter,
        &["bans", "add", "192.0.2.10", "2001:db8:77::9", "--ttl", "1h"],
    );
    assert_eq!(code, 0, "{stderr}");
    let bans = bans_json(&filter);
    assert_eq!(bans.len(), 5, "{bans:?}");
    let manual: Vec<&str> = bans
        .iter()
        .filter(|b| b["reason"] == "manual")
        .map(|b| b["source"].as_str().unwrap())
        .collect();
    assert_eq!(manual.len(), 2);
    assert!(
        manual.contains(&"2001:db8:77::/64"),
        "IPv6 bans cover the budget prefix: {manual:?}"
    );
    // A manual ban applies to an allowlisted peer too (the policy says one is in force, so
    // allowlisted packets look bans up).
    let manual_flag = |filter: &TestFilter| {
        let state = &filter.loaded.state;
        let policy = state.policy(state.active_generation().unwrap()).unwrap();
        policy.header.flags & sipguard_common::abi::policy_flags::MANUAL_BANS != 0
    };
    assert!(manual_flag(&filter));
    assert_eq!(
        filter
            .run(&frame("192.0.2.10".parse().unwrap(), 5060))
            .reason,
        Reason::Banned
    );
    let (code, stdout, stderr) = cli(
        &filter,
        &[
            "bans",
            "clear",
            "--since",
            &sipguard::time::format_time(before).replace(' ', "T"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("lifted 5 bans"), "{stdout}");
    assert!(bans_json(&filter).is_empty());
    assert!(
        !manual_flag(&filter),
        "no manual ban left: allowlisted packets skip the lookup"
    );
    assert_eq!(
        filter
            .run(&frame("192.0.2.10".parse().unwrap(), 5060))
            .reason,
        Reason::Allowlisted
    );
    // Refusals change nothing.
    let (code, _, stderr) = cli(&filter, &["bans", "add", "198.18.0.0/16"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("deny add"), "{stderr}");
    let (code, _, stderr) = cli(&filter, &["bans", "del", "198.18.9.9"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not banned"), "{stderr}");
}

#[test]
fn a_live_limit_change_acts_at_once_and_resets_no_other_bucket() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 2 }\ncarrier = { rate = 1, burst = 2 }",
        "[bans]\nthreshold = 0",
    ));
    let carrier = frame("192.0.2.30".parse().unwrap(), 5060);
    let phone = frame("198.18.8.8".parse().unwrap(), 5070);
    // Drain both buckets.
    filter.run_repeated(&carrier, 10);
    filter.run_repeated(&phone, 10);
    assert_eq!(filter.run(&carrier).reason, Reason::PeerRateLimited);
    assert_eq!(filter.run(&phone).reason, Reason::RateLimited);

    let (code, stdout, stderr) = cli(
        &filter,
        &[
            "limits", "set", "carrier", "--rate", "100000", "--burst", "100000",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("carrier now 100000/s, burst 100000"),
        "{stdout}"
    );
    assert_eq!(
        filter.run(&carrier).reason,
        Reason::Allowlisted,
        "the next packet has the new budget"
    );
    assert_eq!(
        filter.run(&phone).reason,
        Reason::RateLimited,
        "the phone's bucket was not reset"
    );
    let (_, stdout, _) = cli(&filter, &["limits", "show", "--json"]);
    let classes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let carrier_row = classes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "carrier")
        .unwrap();
    assert_eq!(carrier_row["rate"], 100000);

    // An apply of the policy file reconciles the limits back, still without resets.
    filter.apply(&policy(
        "phones = { rate = 1, burst = 2 }\ncarrier = { rate = 1, burst = 2 }",
        "",
    ));
    filter.run_repeated(&carrier, 10);
    assert_eq!(filter.run(&carrier).reason, Reason::PeerRateLimited);
    let (code, _, stderr) = cli(&filter, &["limits", "set", "nosuch", "--rate", "5"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no class named 'nosuch'"), "{stderr}");
}

#[test]
fn monitor_mode_counts_budget_drops_as_would_drop() {
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 1 }\ncarrier = { rate = 1, burst = 1 }",
        "",
    ));
    filter
        .live()
        .set_mode(sipguard_common::abi::Mode::Monitor)
        .unwrap();
    let phone = frame("198.18.8.9".parse().unwrap(), 5070);
    filter.run_repeated(&phone, 10);
    let stats = filter.stats();
    assert_eq!(stats.dropped.packets, 0);
    assert_eq!(
        stats.get(Zone::Access, Reason::RateLimited, true).packets,
        9
    );
}

#[test]
fn runtime_allow_entries_carry_a_class_across_applies() {
    let policy_text = policy(
        "phones = { rate = 1, burst = 1 }\ncarrier = { rate = 1, burst = 3 }",
        "",
    );
    let mut filter = TestFilter::new(&policy_text);
    let (code, _, stderr) = cli(
        &filter,
        &["allow", "add", "--class", "carrier", "203.0.113.7"],
    );
    assert_eq!(code, 0, "{stderr}");
    // Renaming classes shifts their ids; the runtime entry follows its class by name.
    filter.apply(&policy_text.replace(
        "phones = { rate = 1, burst = 1 }",
        "aaa = { rate = 9 }\nphones = { rate = 1, burst = 1 }",
    ));
    let source = frame("203.0.113.7".parse().unwrap(), 5060);
    let reasons: Vec<Reason> = (0..4).map(|_| filter.run(&source).reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::Allowlisted,
            Reason::Allowlisted,
            Reason::Allowlisted,
            Reason::PeerRateLimited
        ]
    );
    let rules = filter.rules(List::Allow);
    assert_eq!(rules.len(), 3);
}

/// The data plane skips the denylist of a family marked empty; a runtime entry must clear the
/// mark at once, and removing the last one sets it again.
#[test]
fn a_runtime_deny_entry_acts_even_when_the_denylist_was_empty() {
    let mut filter = TestFilter::new(
        "[trunk]\nudp = [5060]\n[[allow]]\ncidrs = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n",
    );
    let v4 = frame("192.0.2.10".parse().unwrap(), 5060);
    let v6 = frame("2001:db8:1::10".parse().unwrap(), 5060);
    assert_eq!(filter.run(&v4).reason, Reason::Allowlisted);
    assert_eq!(filter.run(&v6).reason, Reason::Allowlisted);
    let (code, _, stderr) = cli(&filter, &["deny", "add", "192.0.2.10", "2001:db8:1::/64"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(filter.run(&v4).reason, Reason::Denylisted);
    assert_eq!(filter.run(&v6).reason, Reason::Denylisted);
    let (code, _, stderr) = cli(&filter, &["deny", "del", "192.0.2.10", "2001:db8:1::/64"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(filter.run(&v4).reason, Reason::Allowlisted);
    let policy = filter
        .loaded
        .state
        .policy(filter.loaded.state.active_generation().unwrap())
        .unwrap();
    assert_eq!(policy.header.flags, 0, "both families marked empty again");
}

/// The IPv4 prefilter (one bit per /24) must let every address of a runtime entry reach the
/// allowlist at once, across prefilter chunks, and keep outsiders off it.
#[test]
fn a_runtime_allow_entry_passes_the_prefilter_across_its_whole_range() {
    let mut filter =
        TestFilter::new("[trunk]\nudp = [5060]\n[[allow]]\ncidrs = [\"192.0.2.0/24\"]\n");
    let inside = ["64.0.0.1", "67.255.255.254", "68.0.0.1", "71.255.255.254"];
    for source in inside {
        assert_eq!(
            filter.run(&frame(source.parse().unwrap(), 5060)).reason,
            Reason::NotAllowlisted
        );
    }
    // 64.0.0.0/5 spans two prefilter chunks (a chunk covers a /6).
    let (code, _, stderr) = cli(&filter, &["allow", "add", "64.0.0.0/5"]);
    assert_eq!(code, 0, "{stderr}");
    for source in inside {
        assert_eq!(
            filter.run(&frame(source.parse().unwrap(), 5060)).reason,
            Reason::Allowlisted,
            "{source}"
        );
    }
    for source in ["63.255.255.254", "72.0.0.1"] {
        assert_eq!(
            filter.run(&frame(source.parse().unwrap(), 5060)).reason,
            Reason::NotAllowlisted,
            "{source}"
        );
    }
    // An apply rebuilds the prefilter from the policy plus the runtime entries.
    filter.apply("[trunk]\nudp = [5060]\n[[allow]]\ncidrs = [\"192.0.2.0/24\"]\n");
    assert_eq!(
        filter
            .run(&frame("71.255.255.254".parse().unwrap(), 5060))
            .reason,
        Reason::Allowlisted
    );
    assert_eq!(
        filter
            .run(&frame("192.0.2.9".parse().unwrap(), 5060))
            .reason,
        Reason::Allowlisted
    );
}

/// Hosts (/32, /128) live in hash maps, networks in the tries (IPv4 networks behind their own
/// prefilter bitmap): a source is allowlisted by either, runtime changes reach both, listing
/// shows both, and an apply rebuilds both.
#[test]
fn allowlist_hosts_and_networks_answer_together() {
    let policy = "[trunk]\nudp = [5060]\n[[allow]]\ncidrs = [\"192.0.2.0/24\", \"198.51.100.7\", \
                  \"2001:db8:1::/48\", \"2001:db8:9::7\"]\n";
    let mut filter = TestFilter::new(policy);
    let reason = |filter: &mut TestFilter, source: &str| {
        filter.run(&frame(source.parse().unwrap(), 5060)).reason
    };
    for source in [
        "198.51.100.7",
        "192.0.2.200",
        "2001:db8:9::7",
        "2001:db8:1::99",
    ] {
        assert_eq!(reason(&mut filter, source), Reason::Allowlisted, "{source}");
    }
    // Beside a host entry, but no network covers them.
    for source in ["198.51.100.8", "2001:db8:9::8"] {
        assert_eq!(
            reason(&mut filter, source),
            Reason::NotAllowlisted,
            "{source}"
        );
    }
    let (code, _, stderr) = cli(
        &filter,
        &["allow", "add", "198.51.100.0/28", "2001:db8:9::8"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reason(&mut filter, "198.51.100.8"), Reason::Allowlisted);
    assert_eq!(reason(&mut filter, "198.51.100.16"), Reason::NotAllowlisted);
    assert_eq!(reason(&mut filter, "2001:db8:9::8"), Reason::Allowlisted);
    let (code, _, stderr) = cli(
        &filter,
        &[
            "allow",
            "del",
            "198.51.100.7",
            "198.51.100.0/28",
            "2001:db8:9::7",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reason(&mut filter, "198.51.100.7"), Reason::NotAllowlisted);
    assert_eq!(reason(&mut filter, "2001:db8:9::7"), Reason::NotAllowlisted);
    let (code, _, stderr) = cli(&filter, &["allow", "add", "198.51.100.9"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reason(&mut filter, "198.51.100.9"), Reason::Allowlisted);
    assert_eq!(reason(&mut filter, "198.51.100.8"), Reason::NotAllowlisted);
    let rules = filter.rules(List::Allow);
    let listed: Vec<String> = rules.keys().map(std::string::ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "192.0.2.0/24",
            "198.51.100.9/32",
            "2001:db8:1::/48",
            "2001:db8:9::8/128"
        ]
    );
    // An apply moves everything into the other generation's maps, hosts included.
    filter.apply(policy);
    for source in [
        "198.51.100.7",
        "198.51.100.9",
        "2001:db8:9::7",
        "2001:db8:9::8",
    ] {
        assert_eq!(reason(&mut filter, source), Reason::Allowlisted, "{source}");
    }
}

/// One source flooding from every CPU at once shares one bucket: it gets its rate, not a
/// multiple of it (each CPU reads the tick clock; a CPU a tick behind must not reset the bucket).
#[test]
fn a_source_flooding_from_every_cpu_gets_its_rate_not_a_multiple() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    for (rate, burst) in [(100_000u32, 1_000u32), (10_000, 1)] {
        let flood = sipguard_tests::harness::flood_one_source(rate, burst, 300_000, cpus);
        assert_eq!(flood.runs, 300_000 * cpus as u64);
        let ceiling = f64::from(burst)
            + f64::from(rate) * (flood.elapsed.as_secs_f64() + clock_slack())
            + cpus as f64;
        assert!(
            flood.admitted >= u64::from(burst),
            "{rate}/s burst {burst}: {} admitted",
            flood.admitted
        );
        assert!(
            flood.admitted as f64 <= ceiling,
            "{rate}/s burst {burst} from {cpus} CPUs: {} admitted in {:?} (ceiling {ceiling:.0})",
            flood.admitted,
            flood.elapsed
        );
    }
}

#[test]
fn a_full_ban_table_is_swept_and_then_bans_are_issued_again() {
    use sipguard_common::abi::{Ban, BanReason, MAX_BANS, map_name};
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 1 }\ncarrier = { rate = 1, burst = 1 }",
        "[bans]\nthreshold = 3\nwindow = \"60s\"\nttl = \"1h\"",
    ));
    // One-off scanners banned long ago: every slot holds an expired ban.
    let expired = Ban {
        banned_at_ns: 1,
        expires_at_ns: 2,
        reason: BanReason::RateExceeded as u8,
        ..Ban::default()
    };
    let mut live = filter.live();
    for n in 0..MAX_BANS {
        let mut key = SourceKey {
            family: 4,
            prefix_len: 32,
            ..SourceKey::default()
        };
        key.addr[..4].copy_from_slice(&(0x0a00_0000 + n).to_be_bytes());
        live.insert_ban(&key, &expired).unwrap();
    }
    drop(live);
    let fill = |filter: &TestFilter| {
        let tables = filter.loaded.state.map_fill().unwrap();
        tables
            .iter()
            .find(|t| t.name == map_name::BANS)
            .map(|t| t.entries)
            .unwrap()
    };
    assert_eq!(fill(&filter), MAX_BANS as usize);

    // A source earns a ban, and the full table cannot take it: the failure is counted.
    let attacker = frame("198.18.46.6".parse().unwrap(), 5070);
    filter.run_repeated(&attacker, 10);
    let events = filter.loaded.state.event_stats().unwrap();
    assert_eq!(events.bans_issued, 0);
    assert!(events.insert_failures.bans >= 1, "{events:?}");
    assert_eq!(filter.run(&attacker).reason, Reason::RateLimited);

    // Every CLI write opens the state through the sweep: the expired bans go.
    let (code, _, stderr) = cli(&filter, &["bans", "add", "--ttl", "1h", "203.0.113.9"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fill(&filter), 1, "only the new manual ban is left");

    // The next strikes ban the attacker for real.
    filter.run_repeated(&attacker, 5);
    assert_eq!(filter.loaded.state.event_stats().unwrap().bans_issued, 1);
    assert_eq!(filter.run(&attacker).reason, Reason::Banned);
    let sources: Vec<String> = bans_json(&filter)
        .iter()
        .map(|b| b["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources.len(), 2);
    assert!(sources.contains(&"198.18.46.6".to_string()), "{sources:?}");
}

#[test]
fn monitor_mode_records_would_be_bans_that_enforcing_never_applies() {
    use sipguard_common::abi::Mode;
    let mut filter = TestFilter::new(&policy(
        "phones = { rate = 1, burst = 1 }\ncarrier = { rate = 1, burst = 1 }",
        "[bans]\nthreshold = 3\nwindow = \"60s\"\nttl = \"1h\"",
    ));
    filter.live().set_mode(Mode::Monitor).unwrap();
    let scanner = frame("198.18.47.7".parse().unwrap(), 5070);
    filter.run_repeated(&scanner, 10);
    // Recorded, counted and listed as what enforcing would have done; nothing dropped.
    let verdict = filter.run(&scanner);
    assert_eq!((verdict.reason, verdict.monitored), (Reason::Banned, true));
    assert!(verdict.passed());
    let events = filter.loaded.state.event_stats().unwrap();
    assert_eq!((events.bans_issued, events.would_bans_issued), (0, 1));
    let bans = bans_json(&filter);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["would_be"], true);
    let (_, table, _) = cli(&filter, &["bans", "list"]);
    assert!(table.contains("rate_exceeded (would-be)"), "{table}");

    // The switch to enforce discards it: the scanner is judged by its budget, not banned.
    let (code, stdout, stderr) = cli(&filter, &["mode", "enforce"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("discarded 1 would-be bans"), "{stdout}");
    assert!(bans_json(&filter).is_empty());
    let verdict = filter.run(&scanner);
    assert_eq!(verdict.reason, Reason::RateLimited);
    assert_eq!(filter.loaded.state.event_stats().unwrap().bans_issued, 0);

    // The data plane never enforces one either, even if the controller has not discarded it
    // (the mode byte flipped behind its back).
    filter.live().set_mode(Mode::Monitor).unwrap();
    let other = frame("198.18.47.8".parse().unwrap(), 5070);
    filter.run_repeated(&other, 10);
    assert_eq!(bans_json(&filter).len(), 1);
    let mut live = filter.live();
    let generation = live.active_generation().unwrap();
    let mut value = live.policy(generation).unwrap();
    value.header.mode = Mode::Enforce as u8;
    live.set_policy(generation, &value).unwrap();
    drop(live);
    assert_ne!(filter.run(&other).reason, Reason::Banned);
    assert!(
        filter.loaded.state.bans().unwrap().is_empty(),
        "the data plane removed the would-be ban it met"
    );
    // Bans issued while enforcing are real.
    filter.run_repeated(&other, 5);
    assert_eq!(filter.run(&other).reason, Reason::Banned);
}
