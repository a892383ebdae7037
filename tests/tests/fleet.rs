//! Fleet mode on Redis (issue 16) in the fleet lab (`sipguard_tests::fleet_lab`): two or three
//! SBC hosts, each running `sipguard run` with the fleet settings, share bans, runtime
//! allow/deny entries and the lockdown through one redis-server; Redis killed and restarted
//! empty, a host cut off and back, loops and duplicates, and a host's allowlist refusing a
//! remote ban.
//!
//! Run as root, one test at a time: `cargo test -p sipguard-tests --test fleet -- --test-threads 1`.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use sipguard_tests::{
    fleet_lab::{
        ATTACKER_V4, BanRow, FLEET, FleetConfig, FleetHost, FleetLab, REDIS_PORT, SBC_IF, policy,
        sample_sum,
    },
    lab::wait_until,
};

/// The lab itself, without any daemon: every SBC reaches Redis over its own link with the
/// password (and not without it), a partition cuts exactly that host off and healing brings it
/// back, and a killed Redis comes back empty.
#[test]
fn the_lab_links_every_sbc_to_redis_and_partitions_and_restarts_it() {
    let mut lab = FleetLab::new("flab", 3).unwrap();
    let ping = |lab: &FleetLab, index: usize, password: bool| {
        let host = lab.host(index);
        // redis-cli 7.0 has no timeout of its own.
        let mut command = host.sbc.command("timeout");
        command
            .args(["2", "redis-cli", "-h", &host.redis_addr.to_string(), "-p"])
            .arg(REDIS_PORT.to_string())
            .arg("PING");
        if password {
            command.env("REDISCLI_AUTH", lab.redis.password());
        }
        let output = command.output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
            + String::from_utf8_lossy(&output.stderr).trim()
    };
    for index in 0..3 {
        assert_eq!(ping(&lab, index, true), "PONG", "host {index}");
        let refused = ping(&lab, index, false);
        assert!(refused.contains("NOAUTH"), "host {index}: {refused}");
    }
    lab.host(1).partition().unwrap();
    assert_ne!(ping(&lab, 1, true), "PONG", "cut off");
    assert_eq!(ping(&lab, 0, true), "PONG", "the others are not");
    lab.host(1).heal().unwrap();
    assert!(wait_until(Duration::from_secs(5), || ping(&lab, 1, true) == "PONG"));

    lab.redis.cli(&["SET", "sipguard-lab-probe", "1"]).unwrap();
    lab.redis.kill();
    assert!(!ping(&lab, 0, true).contains("PONG"), "killed");
    lab.redis.restart().unwrap();
    assert_eq!(lab.redis.keys().unwrap(), Vec::<String>::new(), "empty");
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// Polls `probe` every 20 ms until it returns Some or `timeout` passes; the value and how long
/// it took. Panics naming `what`, the last probe's answer and the daemons' logs.
fn wait_for<T>(
    lab: &FleetLab,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return (value, start.elapsed());
        }
        if start.elapsed() > timeout {
            panic!("{what}: not within {timeout:?}{}", logs(lab));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every daemon's last log lines, for failure messages.
fn logs(lab: &FleetLab) -> String {
    lab.hosts.iter().map(|host| host.daemon_log(15)).collect()
}

/// A lab of `hosts` hosts, each daemon started (same policy) and connected to Redis.
fn started(tag: &str, hosts: usize) -> FleetLab {
    let mut lab = FleetLab::new(tag, hosts).unwrap();
    lab.start_all(&policy(&[])).unwrap();
    all_connected(&lab, Duration::from_secs(15));
    lab
}

fn all_connected(lab: &FleetLab, timeout: Duration) -> Duration {
    let start = Instant::now();
    for host in &lab.hosts {
        wait_for(
            lab,
            &format!(
                "{}: sipguard_fleet_connected{{fleet=\"{FLEET}\"}} 1",
                host.name
            ),
            timeout,
            || (host.fleet_connected() == Some(1.0)).then_some(()),
        );
    }
    start.elapsed()
}

/// `count` addresses from `first` on (within one /16).
fn addresses(first: Ipv4Addr, count: u32) -> Vec<Ipv4Addr> {
    (0..count)
        .map(|i| Ipv4Addr::from(u32::from(first) + i))
        .collect()
}

/// The sources of `host`'s bans that are in `wanted` and came from `origin`.
fn bans_from(host: &FleetHost, wanted: &BTreeSet<String>, origin: &str) -> BTreeSet<String> {
    host.bans()
        .unwrap_or_default()
        .into_iter()
        .filter(|row| wanted.contains(&row.source) && row.origin.as_deref() == Some(origin))
        .map(|row| row.source)
        .collect()
}

/// The Redis stream of the fleet's changes: `sipguard:{lab}:changes` (or without the braces).
fn changes_key(lab: &FleetLab) -> String {
    let keys = lab.redis.keys().unwrap();
    let wanted = [
        format!("sipguard:{{{FLEET}}}:changes"),
        format!("sipguard:{FLEET}:changes"),
    ];
    wanted
        .iter()
        .find(|key| keys.contains(key))
        .cloned()
        .unwrap_or_else(|| panic!("no stream {wanted:?} among the keys {keys:?}"))
}

/// The stream's messages that mention `needle` in a field name or value.
fn messages_about(lab: &FleetLab, key: &str, needle: &str) -> Vec<String> {
    lab.redis
        .stream(key)
        .unwrap()
        .into_iter()
        .filter(|message| {
            message
                .fields
                .iter()
                .any(|(name, value)| name.contains(needle) || value.contains(needle))
        })
        .map(|message| format!("{} {:?}", message.id, message.fields))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Sharing
// ------------------------------------------------------------------------------------------------

/// The case: SIPVicious svcrack, banned on host A at its first request (its User-Agent
/// is friendly-scanner), is dropped on host B as banned: B's ban, from A, came less than a
/// second after A's (both `bans list` polled every 20 ms).
#[test]
fn svcrack_banned_on_one_host_is_dropped_on_another_within_a_second() {
    let lab = started("fla", 2);
    let (a, b) = (lab.host(0), lab.host(1));
    let attacker = ATTACKER_V4.to_string();
    assert_eq!(b.counter("banned", "dropped").unwrap(), 0);

    // Each poller: when (since `start`) its host's `bans list` first showed the attacker.
    let start = Instant::now();
    let poll = |host: &FleetHost| {
        let deadline = start + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(row) = host.ban_of(&attacker) {
                return Some((start.elapsed(), row));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    let (seen_a, seen_b, cracked) = std::thread::scope(|scope| {
        let on_a = scope.spawn(|| poll(a));
        let on_b = scope.spawn(|| poll(b));
        // A handful of passwords, never answered (its first request is dropped and bans it):
        // stopped once both hosts are polled out.
        let svcrack = a.svcrack("1000-1004", 3).unwrap();
        let (seen_a, seen_b) = (on_a.join().unwrap(), on_b.join().unwrap());
        (seen_a, seen_b, svcrack.finish(Duration::ZERO))
    });
    let (at_a, ban_a) = seen_a.unwrap_or_else(|| {
        panic!(
            "host A banned svcrack: svcrack said {cracked}\nA's stats: {:?}{}",
            a.cli(&["stats"]),
            logs(&lab)
        )
    });
    assert_eq!(ban_a.reason, "scanner", "{ban_a:?}");
    assert!(ban_a.is_local(), "A's own ban: {ban_a:?}");
    let (at_b, ban_b) =
        seen_b.unwrap_or_else(|| panic!("A's ban never reached B (20 s){}", logs(&lab)));
    assert_eq!(ban_b.origin.as_deref(), Some(a.name), "{ban_b:?}");
    assert_eq!(ban_b.reason, "scanner", "{ban_b:?}");
    // The same end: B's copy runs out when A's does (a second of rounding either way).
    assert!(
        ban_b.expires_at_unix.abs_diff(ban_a.expires_at_unix) <= 2,
        "A's ban {ban_a:?}, B's {ban_b:?}"
    );
    let delay = at_b.saturating_sub(at_a);
    assert!(
        delay < Duration::from_secs(1),
        "A's ban reached B's bans list {delay:?} after A's (A at {at_a:?}, B at {at_b:?}): \
         over the issue's second"
    );
    eprintln!("svcrack: banned on A at {at_a:?}, on B at {at_b:?}: {delay:?} later");

    // svcrack against B: every request dropped as banned, none reaches the scanner check.
    let scanner_drops_b = b.counter("scanner", "dropped").unwrap();
    let svcrack = b.svcrack("1000-1004", 3).unwrap();
    let dropped = wait_until(Duration::from_secs(10), || {
        b.counter("banned", "dropped").unwrap_or(0) >= 1
    });
    let cracked_b = svcrack.finish(Duration::ZERO);
    assert!(
        dropped,
        "B dropped svcrack as banned: {:?}\nsvcrack: {cracked_b}",
        b.cli(&["stats"])
    );
    assert_eq!(b.counter("scanner", "dropped").unwrap(), scanner_drops_b);
    assert_eq!(
        b.ban_of(&attacker).and_then(|row| row.origin).as_deref(),
        Some(a.name)
    );
    assert!(a.counter("scanner", "dropped").unwrap() >= 1);
    // /metrics is a snapshot up to a second old: poll.
    let shared = wait_until(Duration::from_secs(5), || {
        sample_sum(&a.metrics(), "sipguard_fleet_published_total") >= 1.0
            && sample_sum(&b.metrics(), "sipguard_fleet_applied_total") >= 1.0
    });
    let fleet_lines = |host: &FleetHost| {
        host.metrics()
            .lines()
            .filter(|line| line.starts_with("sipguard_fleet_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        shared,
        "A published, B applied:\nA: {}\nB: {}",
        fleet_lines(a),
        fleet_lines(b)
    );
}

/// Redis killed in the middle of 200 manual bans on A (after 100): A keeps its bans and keeps dropping,
/// both hosts report the connection lost; Redis restarted empty, A's full resync brings every
/// one of the 200 bans to B and both report connected again.
#[test]
fn a_redis_crash_mid_burst_loses_no_ban_once_redis_is_back_empty() {
    let mut lab = started("flb", 2);
    let sources = addresses(Ipv4Addr::new(198, 18, 60, 1), 200);
    let wanted: BTreeSet<String> = sources.iter().map(ToString::to_string).collect();
    // 40 commands of 5 bans, 20 ms apart (about 2 s): Redis dies after the 20th.
    for (index, chunk) in sources.chunks(5).enumerate() {
        if index == 20 {
            lab.redis.kill();
        }
        let names: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let mut args = vec!["bans", "add", "--iface", SBC_IF, "--ttl", "1h"];
        args.extend(names.iter().map(String::as_str));
        lab.host(0).cli(&args).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let lost = {
        let a = lab.host(0);
        let local: BTreeSet<String> = a
            .bans()
            .unwrap()
            .into_iter()
            .filter(|row| wanted.contains(&row.source))
            .inspect(|row| assert!(row.is_local(), "A's own ban: {row:?}"))
            .map(|row| row.source)
            .collect();
        assert_eq!(local, wanted, "A keeps every ban without Redis");
        let (_, lost) = wait_for(
            &lab,
            "both hosts report Redis lost",
            Duration::from_secs(20),
            || {
                lab.hosts
                    .iter()
                    .all(|host| host.fleet_connected() == Some(0.0))
                    .then_some(())
            },
        );
        // A keeps filtering: banned sources are dropped, the counter moves.
        let before = a.counter("banned", "dropped").unwrap();
        a.inject_options(&sources[150..160], "Yealink SIP-T46S")
            .unwrap();
        wait_for(
            &lab,
            "A drops banned sources without Redis",
            Duration::from_secs(5),
            || (a.counter("banned", "dropped").ok()? >= before + 10).then_some(()),
        );
        lost
    };

    // What B had before Redis came back: at most the bans shared before the crash.
    let before_restart = bans_from(lab.host(1), &wanted, lab.host(0).name).len();
    assert!(before_restart <= 100, "B has {before_restart} of A's bans");
    lab.redis.restart().unwrap();
    let restarted = Instant::now();
    let b = lab.host(1);
    let (_, healed) = wait_for(
        &lab,
        "every ban of A on B after Redis came back empty",
        Duration::from_secs(30),
        || (bans_from(b, &wanted, lab.host(0).name) == wanted).then_some(()),
    );
    all_connected(&lab, Duration::from_secs(30));
    eprintln!(
        "redis crash: connection lost reported within {lost:?}; B had {before_restart} of A's 200 \
         bans; after the restart every ban on B within {healed:?}, both connected within {:?}",
        restarted.elapsed()
    );
    // No ban came back to A as a remote one.
    assert!(lab.host(0).bans().unwrap().iter().all(BanRow::is_local));
}

/// B cut off Redis (its fleet link down) while A bans 100 spoofed scanners: B has none of them
/// meanwhile and all of them, from A, once the link is back.
#[test]
fn a_host_cut_off_during_a_ban_burst_catches_up_when_its_link_returns() {
    let lab = started("flc", 2);
    let (a, b) = (lab.host(0), lab.host(1));
    let sources = addresses(Ipv4Addr::new(198, 18, 61, 1), 100);
    let wanted: BTreeSet<String> = sources.iter().map(ToString::to_string).collect();
    b.partition().unwrap();
    let cut = Instant::now();
    for chunk in sources.chunks(10) {
        a.inject_scanners(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(
        &lab,
        "A bans all 100 scanners",
        Duration::from_secs(10),
        || {
            let banned: BTreeSet<String> = a
                .bans()
                .ok()?
                .into_iter()
                .filter(|row| row.reason == "scanner" && row.is_local())
                .map(|row| row.source)
                .filter(|source| wanted.contains(source))
                .collect();
            (banned == wanted).then_some(())
        },
    );
    // Let A publish them while B cannot hear.
    std::thread::sleep(Duration::from_secs(2));
    let during = bans_from(b, &wanted, a.name).len();
    let b_noticed = b.fleet_connected();
    assert_eq!(during, 0, "B is cut off, yet has {during} of A's bans");
    b.heal().unwrap();
    let healed = Instant::now();
    let (_, caught_up) = wait_for(
        &lab,
        "B has every ban of A after its link came back",
        Duration::from_secs(30),
        || (bans_from(b, &wanted, a.name) == wanted).then_some(()),
    );
    all_connected(&lab, Duration::from_secs(30));
    eprintln!(
        "partition: {:?} cut off (B's sipguard_fleet_connected then: {b_noticed:?}); B caught up \
         {caught_up:?} after the link came back",
        healed - cut
    );
}

// ------------------------------------------------------------------------------------------------
// Loops, duplicates, refusals
// ------------------------------------------------------------------------------------------------

/// Three hosts (C configured by its policy's `[fleet]` section): a deny entry added on A is on
/// B and C with origin `fleet:sbc-a`, and the stream holds exactly one message for it (nobody
/// published it again); deleted on A, it goes from B and C (one more message); an allow entry
/// likewise. A ban of a source C's policy allowlists reaches B but is refused on C, and counted;
/// lifted on A, it is lifted on B. B and C restarted publish nothing again.
#[test]
fn three_hosts_share_an_entry_once_and_an_allowlisting_host_refuses_the_ban() {
    let mut lab = FleetLab::new("fld", 3).unwrap();
    let partners = "198.18.70.0/24";
    for index in 0..2 {
        lab.host_mut(index)
            .start(&policy(&[]), FleetConfig::Flags)
            .unwrap();
    }
    lab.host_mut(2)
        .start(&policy(&[partners]), FleetConfig::PolicySection)
        .unwrap();
    all_connected(&lab, Duration::from_secs(15));
    let (a, b, c) = (lab.host(0), lab.host(1), lab.host(2));

    let denied = "198.18.80.0/24";
    a.cli(&["deny", "add", "--iface", SBC_IF, denied]).unwrap();
    let from_a = format!("fleet:{}", a.name);
    for host in [b, c] {
        wait_for(
            &lab,
            &format!("{denied} on {}'s denylist", host.name),
            Duration::from_secs(5),
            || {
                host.entries("deny")
                    .ok()?
                    .contains(&(denied.to_string(), from_a.clone()))
                    .then_some(())
            },
        );
    }
    assert!(
        a.entries("deny")
            .unwrap()
            .contains(&(denied.to_string(), "runtime".to_string())),
        "A's own entry stays runtime: {:?}",
        a.entries("deny")
    );
    // Time for any host to (wrongly) publish what it applied.
    std::thread::sleep(Duration::from_secs(1));
    let key = changes_key(&lab);
    let prefix = denied.trim_end_matches(".0/24");
    let added = messages_about(&lab, &key, prefix);
    assert_eq!(added.len(), 1, "one message for {denied}: {added:#?}");

    a.cli(&["deny", "del", "--iface", SBC_IF, denied]).unwrap();
    for host in [b, c] {
        wait_for(
            &lab,
            &format!("{denied} gone from {}'s denylist", host.name),
            Duration::from_secs(5),
            || {
                (!host
                    .entries("deny")
                    .ok()?
                    .iter()
                    .any(|(entry, _)| entry == denied))
                .then_some(())
            },
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let both = messages_about(&lab, &key, prefix);
    assert_eq!(both.len(), 2, "an add and a del for {denied}: {both:#?}");

    // The same for an allow entry.
    let allowed = "198.18.83.0/24";
    let listed = |host: &FleetHost| {
        host.entries("allow")
            .ok()
            .and_then(|rows| rows.into_iter().find(|(entry, _)| entry == allowed))
            .map(|(_, origin)| origin)
    };
    a.cli(&["allow", "add", "--iface", SBC_IF, allowed])
        .unwrap();
    for host in [b, c] {
        wait_for(
            &lab,
            &format!("{allowed} on {}'s allowlist", host.name),
            Duration::from_secs(5),
            || (listed(host)? == from_a).then_some(()),
        );
    }
    a.cli(&["allow", "del", "--iface", SBC_IF, allowed])
        .unwrap();
    for host in [b, c] {
        wait_for(
            &lab,
            &format!("{allowed} gone from {}'s allowlist", host.name),
            Duration::from_secs(5),
            || listed(host).is_none().then_some(()),
        );
    }

    // A bans a partner of C's: B takes the ban, C refuses it.
    let partner = "198.18.70.7";
    let refused = |host: &FleetHost| {
        host.metric("sipguard_fleet_refused_total", &["reason=\"allowlisted\""])
            .unwrap_or(0.0)
    };
    assert_eq!(refused(c), 0.0);
    a.cli(&["bans", "add", "--iface", SBC_IF, partner]).unwrap();
    wait_for(
        &lab,
        "A's ban of the partner on B",
        Duration::from_secs(5),
        || (b.ban_of(partner)?.origin.as_deref() == Some(a.name)).then_some(()),
    );
    wait_for(
        &lab,
        "C counts the partner's ban as refused (allowlisted)",
        Duration::from_secs(5),
        || (refused(c) >= 1.0).then_some(()),
    );
    assert_eq!(
        c.ban_of(partner),
        None,
        "C applied a ban of its own partner"
    );
    assert!(c.bans().unwrap().is_empty(), "{:?}", c.bans());

    // Lifted on A, lifted on B.
    a.cli(&["bans", "del", "--iface", SBC_IF, partner]).unwrap();
    wait_for(
        &lab,
        "A's lifted ban gone from B",
        Duration::from_secs(5),
        || b.ban_of(partner).is_none().then_some(()),
    );

    // B and C restarted: what they received is not theirs to share (nothing new on the stream).
    std::thread::sleep(Duration::from_secs(1));
    let messages = lab.redis.stream(&key).unwrap().len();
    for index in 1..3 {
        lab.host_mut(index).stop();
    }
    lab.host_mut(1)
        .start(&policy(&[]), FleetConfig::Flags)
        .unwrap();
    lab.host_mut(2)
        .start(&policy(&[partners]), FleetConfig::PolicySection)
        .unwrap();
    all_connected(&lab, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let after = lab.redis.stream(&key).unwrap();
    assert_eq!(
        after.len(),
        messages,
        "restarted hosts published again: {:#?}",
        &after[messages.min(after.len())..]
    );
}

/// A lockdown switched on A holds on B (configured by its policy's `[fleet]` section): B drops
/// an unknown source as `lockdown`; off on A, off on B, and B admits it again.
#[test]
fn a_lockdown_on_one_host_holds_on_the_other_and_lifts_with_it() {
    let mut lab = FleetLab::new("fle", 2).unwrap();
    lab.host_mut(0)
        .start(&policy(&[]), FleetConfig::Flags)
        .unwrap();
    lab.host_mut(1)
        .start(&policy(&[]), FleetConfig::PolicySection)
        .unwrap();
    all_connected(&lab, Duration::from_secs(15));
    let (a, b) = (lab.host(0), lab.host(1));
    let phone = [Ipv4Addr::new(198, 18, 90, 10)];
    let user_agent = "Yealink SIP-T46S";
    assert_eq!(b.lockdown().unwrap(), "off");

    a.cli(&["lockdown", "--iface", SBC_IF, "on"]).unwrap();
    let (_, took) = wait_for(&lab, "A's lockdown on B", Duration::from_secs(5), || {
        (b.lockdown().ok()? == "allowlisted+verified").then_some(())
    });
    let before = b.counter("lockdown", "dropped").unwrap();
    b.inject_options(&phone, user_agent).unwrap();
    wait_for(
        &lab,
        "B drops an unknown source as lockdown",
        Duration::from_secs(5),
        || (b.counter("lockdown", "dropped").ok()? > before).then_some(()),
    );

    a.cli(&["lockdown", "--iface", SBC_IF, "--no-verified", "on"])
        .unwrap();
    wait_for(
        &lab,
        "A's stricter lockdown on B",
        Duration::from_secs(5),
        || (b.lockdown().ok()? == "allowlisted").then_some(()),
    );

    a.cli(&["lockdown", "--iface", SBC_IF, "off"]).unwrap();
    wait_for(
        &lab,
        "A's lockdown lifted on B",
        Duration::from_secs(5),
        || (b.lockdown().ok()? == "off").then_some(()),
    );
    let admitted = b.counter("access_admitted", "passed").unwrap();
    b.inject_options(&phone, user_agent).unwrap();
    wait_for(
        &lab,
        "B admits the source again",
        Duration::from_secs(5),
        || (b.counter("access_admitted", "passed").ok()? > admitted).then_some(()),
    );
    assert_eq!(a.lockdown().unwrap(), "off");
    eprintln!("lockdown: on B {took:?} after A switched it on");
}

// ------------------------------------------------------------------------------------------------
// Changes made while away
// ------------------------------------------------------------------------------------------------

/// A deny entry A shared, then deleted on A while A was cut off Redis: once A is back, the
/// deletion reaches B, and Redis no longer holds the entry for hosts that join later.
#[test]
fn a_deletion_made_while_cut_off_reaches_the_others_once_back() {
    let lab = started("flf", 2);
    let (a, b) = (lab.host(0), lab.host(1));
    let denied = "198.18.81.0/24";
    let on_b = || {
        b.entries("deny")
            .unwrap_or_default()
            .iter()
            .any(|(entry, _)| entry == denied)
    };
    a.cli(&["deny", "add", "--iface", SBC_IF, denied]).unwrap();
    wait_for(&lab, "A's deny entry on B", Duration::from_secs(5), || {
        on_b().then_some(())
    });
    a.partition().unwrap();
    wait_for(
        &lab,
        "A reports Redis lost",
        Duration::from_secs(20),
        || (a.fleet_connected() == Some(0.0)).then_some(()),
    );
    a.cli(&["deny", "del", "--iface", SBC_IF, denied]).unwrap();
    a.heal().unwrap();
    all_connected(&lab, Duration::from_secs(30));
    let gone = wait_until(Duration::from_secs(5), || !on_b());
    let keys = lab.redis.keys().unwrap();
    assert!(
        gone,
        "A deleted {denied} while cut off; 5 s after A reconnected B still has it: {:?}; Redis \
         keys: {keys:?}",
        b.entries("deny")
    );
    assert!(
        !keys.iter().any(|key| key.contains(denied)),
        "Redis still holds {denied}: {keys:?}"
    );
}

/// A lockdown switched on A, then Redis restarted empty: the fleet's lockdown is in Redis again
/// once A and B are back, so a host that joins afterwards locks down too.
#[test]
fn a_lockdown_outlives_a_redis_restart_for_a_host_that_joins_later() {
    let mut lab = FleetLab::new("flg", 3).unwrap();
    for index in 0..2 {
        lab.host_mut(index)
            .start(&policy(&[]), FleetConfig::Flags)
            .unwrap();
    }
    let first_two = |lab: &FleetLab, up: f64| {
        lab.hosts[..2]
            .iter()
            .all(|host| host.fleet_connected() == Some(up))
            .then_some(())
    };
    wait_for(&lab, "A and B connected", Duration::from_secs(15), || {
        first_two(&lab, 1.0)
    });
    lab.host(0)
        .cli(&["lockdown", "--iface", SBC_IF, "on"])
        .unwrap();
    wait_for(&lab, "A's lockdown on B", Duration::from_secs(5), || {
        (lab.host(1).lockdown().ok()? == "allowlisted+verified").then_some(())
    });
    lab.redis.kill();
    wait_for(
        &lab,
        "A and B report Redis lost",
        Duration::from_secs(20),
        || first_two(&lab, 0.0),
    );
    lab.redis.restart().unwrap();
    wait_for(&lab, "A and B reconnected", Duration::from_secs(30), || {
        first_two(&lab, 1.0)
    });
    // Time for the resync to finish.
    std::thread::sleep(Duration::from_secs(1));
    let keys = lab.redis.keys().unwrap();
    lab.host_mut(2)
        .start(&policy(&[]), FleetConfig::Flags)
        .unwrap();
    let c = lab.host(2);
    wait_for(&lab, "C connected", Duration::from_secs(15), || {
        (c.fleet_connected() == Some(1.0)).then_some(())
    });
    let locked = wait_until(Duration::from_secs(5), || {
        c.lockdown()
            .is_ok_and(|level| level == "allowlisted+verified")
    });
    assert!(
        locked,
        "C joined after Redis restarted empty: lockdown {:?} while A is {:?} and B {:?}; Redis \
         keys after A and B resynced: {keys:?}",
        c.lockdown(),
        lab.host(0).lockdown(),
        lab.host(1).lockdown()
    );
}

/// Filtering does not depend on `sipguard run`: an operator may change things while it is
/// stopped (an upgrade, a crash). A's daemon stopped, A deletes a deny entry it had shared and
/// switches the lockdown on (the fleet's last word was B's "off"); A's daemon started again
/// shares both: B loses the entry and locks down, and A's lockdown stays on.
#[test]
fn changes_made_while_the_daemon_was_stopped_are_shared_when_it_is_back() {
    let mut lab = started("flh", 2);
    let denied = "198.18.82.0/24";
    let on_b = |lab: &FleetLab| {
        lab.host(1)
            .entries("deny")
            .unwrap_or_default()
            .iter()
            .any(|(entry, _)| entry == denied)
    };
    lab.host(0)
        .cli(&["deny", "add", "--iface", SBC_IF, denied])
        .unwrap();
    wait_for(&lab, "A's deny entry on B", Duration::from_secs(5), || {
        on_b(&lab).then_some(())
    });
    // B switches the lockdown on and off: the fleet's last word is B's "off".
    for (level, expected) in [("on", "allowlisted+verified"), ("off", "off")] {
        lab.host(1)
            .cli(&["lockdown", "--iface", SBC_IF, level])
            .unwrap();
        wait_for(
            &lab,
            &format!("B's lockdown {level} on A"),
            Duration::from_secs(5),
            || (lab.host(0).lockdown().ok()? == expected).then_some(()),
        );
    }

    lab.host_mut(0).stop();
    lab.host(0)
        .cli(&["deny", "del", "--iface", SBC_IF, denied])
        .unwrap();
    lab.host(0)
        .cli(&["lockdown", "--iface", SBC_IF, "on"])
        .unwrap();
    lab.host_mut(0)
        .start(&policy(&[]), FleetConfig::Flags)
        .unwrap();
    all_connected(&lab, Duration::from_secs(15));
    let gone = wait_until(Duration::from_secs(5), || !on_b(&lab));
    let locked = wait_until(Duration::from_secs(5), || {
        lab.host(1)
            .lockdown()
            .is_ok_and(|level| level == "allowlisted+verified")
    });
    let a_locked = lab.host(0).lockdown().unwrap();
    assert!(
        gone && locked && a_locked == "allowlisted+verified",
        "5 s after A's daemon came back: B still has {denied}: {}; B's lockdown {:?} (A switched \
         it on); A's own lockdown now {a_locked:?}; Redis keys {:?}\nA's history:\n{}",
        !gone,
        lab.host(1).lockdown(),
        lab.redis.keys(),
        lab.host(0)
            .cli(&["history", "--iface", SBC_IF])
            .unwrap_or_default()
    );
}
