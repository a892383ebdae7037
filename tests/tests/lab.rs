//! The SIP lab with real peers (Kamailio, sipp, SIPVicious, trafgen), enforcing and in monitor
//! mode: real SIP keeps working while the attacks are stopped, and what the peers report agrees
//! with sipguard's counters. One test, so that the two runs never compete for the CPUs.
//!
//! The enforcing run floods as hard as trafgen can (one sender per CPU, 4 million packets) while
//! the carrier and the phone are calling. The monitor run lets everything through to Kamailio, so
//! it floods gently (3,000 packets per second) after the calls: a flood Kamailio can take, so
//! that what reaches it can be counted, and that the calls do not depend on it.
//!
//! In both runs a compromised phone (account 1002, its password leaked) registers and places
//! normal calls among fraudulent ones to premium and far international numbers (issue 12).
//!
//! The SBC's answers feed back: svcrack, disguised as a phone and slow (no scanner signature, no
//! rate limit catches it), is banned for the failures its guesses collect (`auth_failures`);
//! the registered phone, a verified source, keeps its calls while a third of the flood spoofs
//! its address.
//!
//! The access gate (issue 17), one run: the whole flood at the access port with `sipguard
//! attack-mode on`; none of it reaches Kamailio, and a phone that never registered before
//! registers during it (`sipguard-lab gate` plays it beside the gate open). The two tests take
//! turns ([`LAB`]).

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::{Mutex, MutexGuard},
};

use sipguard_tests::{
    pins::TempPinRoot,
    sip_lab::{
        CRACKER_IP, ENUMERATOR_IP, LAB_POLICY, LabOptions, LabRun, PHONE_IP, Protection,
        SCANNER_IP, Scale, fraud, render, run_lab,
    },
    sipguard_bin,
};

/// One lab at a time: the runs would compete for the CPUs (and the flood is as fast as they go).
static LAB: Mutex<()> = Mutex::new(());

fn lab_turn() -> MutexGuard<'static, ()> {
    LAB.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn play(
    protection: Protection,
    scale: &Scale,
    pins: &TempPinRoot,
    work: &tempfile::TempDir,
) -> LabRun {
    play_with(protection, scale, pins, work, false)
}

/// `gate`: attack mode on for the flood, and a fresh phone registering during it.
fn play_with(
    protection: Protection,
    scale: &Scale,
    pins: &TempPinRoot,
    work: &tempfile::TempDir,
    gate: bool,
) -> LabRun {
    let run = run_lab(&LabOptions {
        protection,
        scale: scale.clone(),
        sipguard: sipguard_bin(),
        work_dir: work.path().join(format!("{protection:?}")),
        pin_root: pins.path().to_path_buf(),
        keep: false,
        feedback: true,
        attack_mode: gate,
        fresh_phone: gate,
    })
    .unwrap_or_else(|e| panic!("{protection:?} run: {e:#}"));
    println!("{}", render(std::slice::from_ref(&run)));
    run
}

fn class(run: &LabRun, name: &str) -> u64 {
    run.kamailio.by_source.get(name).copied().unwrap_or(0)
}

/// The compromised phone registers and completes every one of its legitimate calls, and every
/// INVITE it sends is recognised as a legitimate or a fraudulent call.
fn compromised_phone_calls_normally(run: &LabRun) {
    let phone = &run.compromised;
    assert_eq!(
        phone.registrations.successful, 1,
        "{:?}",
        phone.registrations
    );
    assert_eq!(phone.registrations.failed, 0);
    assert_eq!(phone.legit_planned, fraud::LEGIT.len() as u64);
    assert_eq!(
        phone.legit_completed, phone.legit_planned,
        "legitimate calls of the compromised phone: {phone:?}"
    );
    assert_eq!(
        phone.calls.created,
        (fraud::LEGIT.len() + fraud::FRAUD.len()) as u64
    );
    assert!(
        phone.unmatched_numbers.is_empty(),
        "{:?}",
        phone.unmatched_numbers
    );
}

#[test]
fn real_sip_survives_real_attacks_and_the_counters_agree_with_the_peers() {
    let _turn = lab_turn();
    let pins = TempPinRoot::new("lab");
    let work = tempfile::tempdir().unwrap();
    let scale = Scale::test();

    let threshold = u64::from(
        sipguard::policy::Policy::parse(LAB_POLICY, "policy.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .feedback
            .auth_threshold,
    );
    assert!(threshold > 0);

    let enforce = play(Protection::Enforce, &scale, &pins, &work);
    // Every carrier call and every phone registration and call succeeds during the attack.
    assert_eq!(
        enforce.carrier_calls.created,
        u64::from(scale.carrier_calls)
    );
    assert_eq!(
        enforce.carrier_calls.successful,
        u64::from(scale.carrier_calls)
    );
    assert_eq!(enforce.carrier_calls.failed, 0);
    assert_eq!(
        enforce.phone_registrations.successful,
        u64::from(scale.phone_registrations)
    );
    assert_eq!(enforce.phone_registrations.failed, 0);
    // ... also while a third of the flood spoofs the phone's address: the SBC's 200 OK to its
    // REGISTER made it a verified source, whose own budget holds the flood's OPTIONS apart from
    // its REGISTERs and INVITEs; it is never banned.
    assert_eq!(
        enforce.phone_calls.successful,
        u64::from(scale.phone_calls),
        "phone calls: {:?}",
        enforce.phone_calls
    );
    assert_eq!(enforce.phone_calls.failed, 0);
    let phone = &enforce.phone;
    assert_eq!(phone.verified_before_flood, Some(true), "{phone:?}");
    assert_eq!(phone.verified_after, Some(true), "{phone:?}");
    assert!(phone.verified_registrations >= 1, "{phone:?}");
    assert_eq!(phone.ban_reason, None, "the phone banned");
    assert!(enforce.flood.phone_spoofed > 0);
    compromised_phone_calls_normally(&enforce);
    // The destination firewall: no fraudulent call to a denied destination reaches Kamailio;
    // the UK calls are held to their budget (6 INVITEs: 3 challenged calls), and the events name
    // the rule and the number of every drop.
    let fraud = &enforce.compromised;
    assert_eq!(fraud.denied_reaching_kamailio().attempts, 0, "{fraud:?}");
    let uk = &fraud.fraud_by_rule["international"];
    assert!(
        (1..=3).contains(&uk.attempts),
        "UK calls admitted: {}",
        uk.attempts
    );
    assert_eq!(
        fraud.fraud_answered, uk.attempts,
        "only budgeted calls billed"
    );
    let sipguard = enforce.sipguard.as_ref().expect("sipguard view");
    for (reason, rule) in [
        ("destination_denied", "premium"),
        ("destination_denied", "high-risk"),
        ("destination_rate_limited", "international"),
    ] {
        let tally = sipguard
            .drop_events
            .iter()
            .find(|t| {
                t.source == "compromised" && t.reason == reason && t.rule.as_deref() == Some(rule)
            })
            .unwrap_or_else(|| panic!("no {reason} [{rule}] event: {:?}", sipguard.drop_events));
        assert!(
            !tally.numbers.is_empty(),
            "{reason} [{rule}] names its numbers"
        );
    }
    // No SIP from a source outside the carrier's range reaches Kamailio on the trunk.
    assert_eq!(enforce.kamailio.trunk_from_unknown, 0);
    // svmap and svwar say who they are (User-Agent friendly-scanner): their first request is
    // dropped as `scanner` and their source banned, against both zones. svcrack, disguised as a
    // Yealink phone and within a phone's budget, is banned by the SBC's answers: each wrong guess
    // gets a new 401, and `threshold` of them after the first ban it (`auth_failures`).
    assert_eq!(
        class(&enforce, "scanner"),
        0,
        "svmap's probe of the access port"
    );
    for (attacker, reason) in [
        (SCANNER_IP, "scanner"),
        (ENUMERATOR_IP, "scanner"),
        (CRACKER_IP, "auth_failures"),
    ] {
        let ban = sipguard
            .bans
            .iter()
            .find(|b| b.source.parse::<Ipv4Addr>() == Ok(attacker))
            .unwrap_or_else(|| panic!("{attacker} not banned: {:?}", sipguard.bans));
        assert_eq!(ban.reason, reason, "{attacker}");
    }
    assert!(
        !sipguard
            .bans
            .iter()
            .any(|b| b.source.parse::<Ipv4Addr>() == Ok(PHONE_IP)),
        "the phone banned: {:?}",
        sipguard.bans
    );
    assert_eq!(
        sipguard.attacker_requests_after_ban, 0,
        "nothing of theirs after the ban"
    );
    assert!(
        sipguard.drop_events.iter().any(|t| t.source == "enumerator"
            && t.outcome == "dropped"
            && t.reason == "scanner"
            && t.rule.as_deref() == Some("friendly-scanner")),
        "no scanner drop event of the enumerator: {:?}",
        sipguard.drop_events
    );
    assert!(
        !sipguard
            .drop_events
            .iter()
            .any(|t| t.source == "cracker" && t.reason == "scanner"),
        "the disguised svcrack matched a signature: {:?}",
        sipguard.drop_events
    );
    assert_eq!(class(&enforce, "enumerator"), 0);
    let cracker = &enforce.cracker;
    assert_eq!(cracker.ban_reason.as_deref(), Some("auth_failures"));
    assert_eq!(cracker.registers, class(&enforce, "cracker"));
    assert!(
        (threshold + 1..=2 * threshold + 4).contains(&cracker.registers),
        "svcrack's guesses reaching Kamailio: {cracker:?}"
    );
    // Counters agree with the peers: sipp's completed calls against Kamailio's log (INVITE, ACK,
    // BYE per call); trafgen's datagrams against sipguard's counters; and the flood datagrams
    // Kamailio logged against those sipguard admitted to the access port.
    assert_eq!(
        class(&enforce, "carrier"),
        3 * enforce.carrier_calls.successful
    );
    assert_eq!(sipguard.flood_trunk_refused, enforce.flood_sent[&5060]);
    // The daemon's detector may shut the access gate during the flood (the lab policy says
    // "under-attack"): from then on the flood is dropped as unverified.
    assert_eq!(
        class(&enforce, "flood"),
        enforce.flood_sent[&5070]
            - sipguard.flood_access_refused
            - sipguard.flood_access_unverified
    );
    // The flood spoofing the phone: what sipguard refused (its OPTIONS budget spent) and what
    // reached Kamailio add up to what trafgen sent.
    assert_eq!(
        class(&enforce, "phone-spoofed"),
        enforce.flood.phone_spoofed - sipguard.flood_phone_refused
    );
    assert!(
        enforce.phone.spoofed_reaching_kamailio
            <= 10 + 2 * (enforce.flood.seconds.ceil() as u64 + 2),
        "flood spoofing the phone reaching Kamailio: {} (OPTIONS budget: 2/s, burst 10)",
        enforce.phone.spoofed_reaching_kamailio
    );
    assert_eq!(sipguard.would_drop, 0);
    assert!(
        !sipguard
            .counters
            .keys()
            .any(|k| k.contains("peer_rate_limited")),
        "no peer throttled"
    );
    // The phone and the compromised phone stay within their budgets: nothing is rate-limited.
    assert_eq!(
        sipguard
            .counters
            .get("access/rate_limited/dropped")
            .copied(),
        None,
        "{:?}",
        sipguard.counters
    );
    assert_eq!(sipguard.events_lost, 0);
    assert_eq!(
        sipguard.legit_drop_events, 0,
        "no drop of the carrier or the phone"
    );

    let monitor = play(
        Protection::Monitor,
        &scale.clone().gentle_flood_after_calls(),
        &pins,
        &work,
    );
    let watched = monitor.sipguard.as_ref().expect("sipguard view");
    // The same traffic reaches Kamailio: nothing is dropped ...
    assert_eq!(watched.dropped, 0);
    assert!(
        monitor.kamailio.trunk_from_unknown >= monitor.flood_sent[&5060] / 2,
        "{}",
        monitor.kamailio.trunk_from_unknown
    );
    // The two runs flood differently: compare the share of the flood that reached Kamailio.
    assert!(
        u128::from(class(&monitor, "flood")) * u128::from(enforce.flood.packets)
            > u128::from(class(&enforce, "flood")) * 5 * u128::from(monitor.flood.packets),
        "flood reaching Kamailio: {} of {} in monitor, {} of {} enforcing",
        class(&monitor, "flood"),
        monitor.flood.packets,
        class(&enforce, "flood"),
        enforce.flood.packets
    );
    assert!(class(&monitor, "cracker") > class(&enforce, "cracker"));
    // ... and what would be dropped matches trafgen's count and the enforcing run where the
    // traffic is the same (SIPVicious, answered in monitor mode, sends more than when it is cut
    // off).
    assert_eq!(watched.flood_trunk_refused, monitor.flood_sent[&5060]);
    assert!(
        watched.would_drop - watched.flood_trunk_refused - watched.flood_phone_refused
            >= sipguard.dropped
                - sipguard.flood_access_refused
                - sipguard.flood_access_unverified
                - sipguard.flood_trunk_refused
                - sipguard.flood_phone_refused
    );
    for reason in [
        "trunk/not_allowlisted",
        "access/new_source_limited",
        "access/scanner",
        "access/destination_denied",
        "access/destination_rate_limited",
    ] {
        assert!(
            sipguard.counters.contains_key(&format!("{reason}/dropped")),
            "{reason} in enforce"
        );
        assert!(
            watched
                .counters
                .contains_key(&format!("{reason}/would_drop")),
            "{reason} in monitor"
        );
    }
    assert_eq!(monitor.carrier_calls.failed, 0);
    assert_eq!(monitor.phone_registrations.failed, 0);
    // Monitor mode stops no fraud: every fraudulent call reaches Kamailio (its INVITE, then the
    // authenticated retry after the 407) and the carrier answers it.
    compromised_phone_calls_normally(&monitor);
    let fraud = &monitor.compromised;
    assert_eq!(
        fraud.fraud_reaching_kamailio.attempts,
        fraud::FRAUD.len() as u64
    );
    assert!(
        fraud.fraud_reaching_kamailio.packets >= 2 * fraud::FRAUD.len() as u64,
        "{fraud:?}"
    );
    for (rule, reach) in &fraud.fraud_by_rule {
        assert_eq!(reach.attempts, reach.planned, "{rule}");
    }
    assert_eq!(fraud.fraud_answered, fraud::FRAUD.len() as u64);

    // Nothing is left behind: namespaces, pins, processes.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    let ours = format!("-{}-", std::process::id());
    assert!(
        !namespaces
            .lines()
            .any(|l| l.starts_with("sg-lab-") && l.contains(&ours)),
        "{namespaces}"
    );
    let pinned: Vec<_> = std::fs::read_dir(pins.path()).unwrap().collect();
    assert!(pinned.is_empty(), "pins left: {pinned:?}");
    // Every lab process ran in the work directory.
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path().join("cwd"))
                .is_ok_and(|cwd| cwd.starts_with(work.path()))
        })
        .map(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    assert!(leftovers.is_empty(), "processes left: {leftovers:?}");
}

/// Issue 17: the lab's flood, all of it from random spoofed sources at the access port, with the
/// access gate shut (`sipguard attack-mode on`): not one of its packets reaches Kamailio, each is
/// dropped as `unverified` and none spends the new-source budget; every carrier call and every
/// phone registration and call completes; a phone that never registered before registers
/// during the flood (its REGISTER admitted, the 200 OK making it verified).
#[test]
fn with_the_access_gate_shut_the_flood_stays_out_and_a_new_phone_registers() {
    let _turn = lab_turn();
    let pins = TempPinRoot::new("lab-gate");
    let work = tempfile::tempdir().unwrap();
    // 8 million packets: 8 to 10 s here, long enough for the fresh phone (3 s into it).
    let scale = Scale {
        flood_access_only: true,
        flood_packets: 8_000_000,
        ..Scale::test()
    };
    let run = play_with(Protection::Enforce, &scale, &pins, &work, true);
    assert!(run.attack_mode);
    let sent = run.flood_sent[&5070];
    assert!(sent > 100_000, "flood sent: {:?}", run.flood);
    assert_eq!(run.flood_sent[&5060], 0);
    assert_eq!(run.flood.phone_spoofed, 0);
    assert_eq!(class(&run, "flood"), 0, "flood packets reaching Kamailio");
    let sipguard = run.sipguard.as_ref().expect("sipguard view");
    let counter = |key: &str| sipguard.counters.get(key).copied().unwrap_or(0);
    // Every flood packet the SBC saw was dropped as unverified; frames the switch port toward
    // the SBC dropped on a loaded machine (its queue or the SBC's receive ring full) never got
    // there.
    let unverified = counter("access/unverified/dropped");
    assert!(
        unverified <= sent && unverified + run.flood.lost_on_the_way >= sent,
        "every flood packet dropped as unverified: {unverified} of {sent} sent, {} lost on the \
         way: {:?}",
        run.flood.lost_on_the_way,
        sipguard.counters
    );
    assert_eq!(
        sipguard.flood_access_refused, 0,
        "no new-source budget spent"
    );
    for (name, stats, planned) in [
        ("carrier calls", &run.carrier_calls, scale.carrier_calls),
        (
            "phone registrations",
            &run.phone_registrations,
            scale.phone_registrations,
        ),
        ("phone calls", &run.phone_calls, scale.phone_calls),
    ] {
        assert_eq!(stats.successful, u64::from(planned), "{name}: {stats:?}");
        assert_eq!(stats.failed, 0, "{name}: {stats:?}");
    }
    assert_eq!(run.phone.verified_after, Some(true));
    assert_eq!(run.phone.ban_reason, None);
    compromised_phone_calls_normally(&run);
    let fresh = run.fresh_phone.as_ref().expect("fresh phone");
    assert_eq!(fresh.registration.successful, 1, "{fresh:?}");
    assert_eq!(fresh.verified_after, Some(true), "{fresh:?}");
    assert_eq!(
        fresh.registers_reaching_kamailio, 2,
        "challenged, then accepted"
    );
    assert!(
        fresh.during_flood,
        "registered while the flood ran: {fresh:?}"
    );
    let seconds = fresh.seconds_to_register.expect("sipp's response time");
    // Its REGISTER competes only within the REGISTER budget: no retransmission needed (sipp's
    // first is after 500 ms).
    assert!(seconds < 0.5, "first REGISTER to 200 OK: {seconds} s");
}
