//! The host's side of fleet mode on the real program under `BPF_PROG_TEST_RUN`, no Redis: what
//! other hosts share changes the kernel state as the data plane needs it (a received ban drops
//! the source), applying a change twice does nothing more, only received entries are ever
//! replaced or withdrawn, a ban of a source this host allowlists is refused, and nothing
//! received is ever part of what this host shares (no loops).

use std::net::Ipv4Addr;

use sipguard::fleet::{Key, Outcome, Refusal, Value, apply_remote, own_state};
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    frames::Packet,
    harness::{TestFilter, drop, pass},
};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 66);
const PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
[classes]
phones = { rate = 100, burst = 100 }
carrier = { rate = 100, burst = 100 }
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["198.18.1.0/24"]
"#;

fn options(src: Ipv4Addr) -> Vec<u8> {
    Packet::udp4(
        src,
        SBC,
        5062,
        5070,
        b"OPTIONS sip:sbc SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n".to_vec(),
    )
    .build()
}

fn ban(reason: &str, seconds: u64) -> Value {
    Value::Ban {
        reason: reason.into(),
        expires_unix: sipguard::time::now_unix() + seconds,
    }
}

fn net(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

fn apply(filter: &TestFilter, key: Key, value: Option<&Value>) -> Outcome {
    apply_remote(&mut filter.live(), key, value).unwrap()
}

#[test]
fn a_received_ban_drops_the_source_once_and_is_withdrawn_only_as_received() {
    let mut filter = TestFilter::new(POLICY);
    let scanner = Key::Ban(net("198.18.50.66/32"));
    assert_eq!(
        filter.run(&options(SCANNER)),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
    let value = ban("scanner", 600);
    assert_eq!(apply(&filter, scanner, Some(&value)), Outcome::Applied);
    assert_eq!(apply(&filter, scanner, Some(&value)), Outcome::Same);
    assert_eq!(
        filter.run(&options(SCANNER)),
        drop(Zone::Access, Reason::Banned)
    );
    // Nothing received is this host's to share.
    let own = own_state(&filter.loaded.state).unwrap();
    assert!(!own.contains_key(&scanner), "{own:?}");
    // The withdrawal lifts it; a second one changes nothing.
    assert_eq!(apply(&filter, scanner, None), Outcome::Applied);
    assert_eq!(apply(&filter, scanner, None), Outcome::Same);
    assert_eq!(
        filter.run(&options(SCANNER)),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
    // A ban that ran out on its way changes nothing.
    let stale = Value::Ban {
        reason: "scanner".into(),
        expires_unix: sipguard::time::now_unix() - 1,
    };
    assert_eq!(apply(&filter, scanner, Some(&stale)), Outcome::Stale);
    assert!(filter.loaded.state.bans().unwrap().is_empty());
}

#[test]
fn own_bans_stay_and_are_shared_and_allowlisted_sources_are_never_banned_from_afar() {
    let mut filter = TestFilter::new(POLICY);
    // This host's own manual ban: shared, and a remote change to it or a withdrawal leaves it.
    filter
        .live()
        .ban(
            &[net("198.18.50.66/32")],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let scanner = Key::Ban(net("198.18.50.66/32"));
    let own = own_state(&filter.loaded.state).unwrap();
    assert!(
        matches!(own.get(&scanner), Some(Value::Ban { reason, .. }) if reason == "manual"),
        "{own:?}"
    );
    assert_eq!(
        apply(&filter, scanner, Some(&ban("rate_exceeded", 60))),
        Outcome::Own
    );
    assert_eq!(apply(&filter, scanner, None), Outcome::Same);
    assert_eq!(
        filter.run(&options(SCANNER)),
        drop(Zone::Access, Reason::Banned)
    );
    // The carrier is allowlisted here: another host's ban of it is refused, nothing written.
    let carrier = Key::Ban(net("198.18.1.10/32"));
    let bans = filter.loaded.state.bans().unwrap().len();
    assert_eq!(
        apply(&filter, carrier, Some(&ban("auth_failures", 600))),
        Outcome::Refused(Refusal::Allowlisted)
    );
    assert_eq!(filter.loaded.state.bans().unwrap().len(), bans);
    assert_eq!(
        filter.run(&options(CARRIER)),
        pass(Zone::Access, Reason::Allowlisted)
    );
    // A reason this version does not know, or an IPv6 ban of another budget prefix.
    assert_eq!(
        apply(
            &filter,
            Key::Ban(net("198.18.50.67/32")),
            Some(&ban("psychic", 60))
        ),
        Outcome::Refused(Refusal::Unusable)
    );
    assert_eq!(
        apply(
            &filter,
            Key::Ban(net("2001:db8::/48")),
            Some(&ban("scanner", 60))
        ),
        Outcome::Refused(Refusal::Unusable)
    );
    // IPv6 bans travel per budget prefix (/64 here), and an address stands for its prefix.
    let v6 = Key::Ban(net("2001:db8:5::/64"));
    assert_eq!(
        apply(&filter, v6, Some(&ban("scanner", 60))),
        Outcome::Applied
    );
    assert_eq!(
        apply(
            &filter,
            Key::Ban(net("2001:db8:5::7/128")),
            Some(&ban("scanner", 60))
        ),
        Outcome::Same
    );
    filter
        .live()
        .ban(
            &[net("2001:db8:6::9/128")],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let own = own_state(&filter.loaded.state).unwrap();
    assert!(
        own.contains_key(&Key::Ban(net("2001:db8:6::/64"))),
        "{own:?}"
    );
    assert!(!own.contains_key(&v6), "{own:?}");
}

#[test]
fn received_entries_and_lockdown_apply_survive_apply_and_are_never_shared_again() {
    let mut filter = TestFilter::new(POLICY);
    let deny = Key::Deny(net("198.18.2.0/24"));
    assert_eq!(apply(&filter, deny, Some(&Value::Deny)), Outcome::Applied);
    assert_eq!(apply(&filter, deny, Some(&Value::Deny)), Outcome::Same);
    assert_eq!(
        filter.run(&options(PHONE)),
        drop(Zone::Access, Reason::Denylisted)
    );
    // An allow entry naming a class this policy has gets its budget.
    let allow = Key::Allow(net("198.18.3.0/24"));
    let carrier_class = Value::Allow {
        class: Some("carrier".into()),
    };
    assert_eq!(
        apply(&filter, allow, Some(&carrier_class)),
        Outcome::Applied
    );
    assert_eq!(
        filter.run(&options(Ipv4Addr::new(198, 18, 3, 1))),
        pass(Zone::Access, Reason::Allowlisted)
    );
    // Kept across an apply, like runtime entries.
    filter.apply(POLICY);
    assert_eq!(
        filter.run(&options(PHONE)),
        drop(Zone::Access, Reason::Denylisted)
    );
    let own = own_state(&filter.loaded.state).unwrap();
    assert!(
        !own.contains_key(&deny) && !own.contains_key(&allow),
        "{own:?}"
    );
    // This host's own entry is shared, and another host cannot withdraw it.
    filter
        .live()
        .add_entries(
            sipguard::state::List::Deny,
            &[sipguard::policy::Prefix::from(net("203.0.113.0/24"))],
            None,
        )
        .unwrap();
    let mine = Key::Deny(net("203.0.113.0/24"));
    assert!(own_state(&filter.loaded.state).unwrap().contains_key(&mine));
    assert_eq!(apply(&filter, mine, None), Outcome::Same);
    assert_eq!(apply(&filter, mine, Some(&Value::Deny)), Outcome::Own);
    // Withdrawn by its host: gone, and the phone is admitted again.
    assert_eq!(apply(&filter, deny, None), Outcome::Applied);
    assert_eq!(
        filter.run(&options(PHONE)),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
    // The fleet's lockdown.
    let lockdown = |level: &str| Value::Lockdown {
        level: level.into(),
    };
    assert_eq!(
        apply(&filter, Key::Lockdown, Some(&lockdown("allowlisted"))),
        Outcome::Applied
    );
    assert_eq!(
        filter.run(&options(PHONE)),
        drop(Zone::Access, Reason::Lockdown)
    );
    assert_eq!(
        apply(&filter, Key::Lockdown, Some(&lockdown("allowlisted"))),
        Outcome::Same
    );
    assert_eq!(
        apply(&filter, Key::Lockdown, Some(&lockdown("martial-law"))),
        Outcome::Refused(Refusal::Unusable)
    );
    assert_eq!(
        apply(&filter, Key::Lockdown, Some(&lockdown("off"))),
        Outcome::Applied
    );
    assert_eq!(
        filter.run(&options(PHONE)),
        pass(Zone::Access, Reason::AccessAdmitted)
    );
}

#[test]
fn fleet_settings_in_the_policy_are_checked_with_their_line() {
    let good = format!(
        "{POLICY}[fleet]\nredis = \"rediss://redis.example.net:6380/0\"\nname = \"eu\"\nhost = \"sbc-a\"\npassword_file = \"/etc/sipguard/redis.pass\"\n"
    );
    let policy = sipguard::policy::Policy::parse(&good, "p.toml").unwrap();
    let fleet = policy.fleet.unwrap();
    assert_eq!(
        (
            fleet.redis.as_str(),
            fleet.name.as_str(),
            fleet.host.as_str()
        ),
        ("rediss://redis.example.net:6380/0", "eu", "sbc-a")
    );
    let lines = POLICY.lines().count();
    for (bad, line, message) in [
        ("redis = \"http://x\"\n", lines + 2, "is not a Redis URL"),
        (
            "redis = \"redis://r:6379\"\nname = \"eu west\"\n",
            lines + 3,
            "is not a fleet or host name",
        ),
        (
            "redis = \"redis://r:6379\"\nhost = \"\"\n",
            lines + 3,
            "is not a fleet or host name",
        ),
        ("redis = \"redis://r:6379\"\nport = 1\n", 0, "unknown field"),
    ] {
        let text = format!("{POLICY}[fleet]\n{bad}");
        let error = sipguard::policy::Policy::parse(&text, "p.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains(message), "{bad}: {error}");
        if line > 0 {
            assert!(error.contains(&format!("p.toml:{line}")), "{bad}: {error}");
        }
    }
}

#[test]
fn a_burst_of_received_bans_applies_in_one_batch_and_again_changes_nothing() {
    let filter = TestFilter::new(POLICY);
    let keys: Vec<Key> = (0..5_000u32)
        .map(|i| Key::Ban(net(&format!("198.19.{}.{}/32", i >> 8, i & 0xff))))
        .collect();
    let value = ban("rate_exceeded", 600);
    let changes: Vec<(Key, Option<&Value>)> = keys.iter().map(|key| (*key, Some(&value))).collect();
    let outcomes = sipguard::fleet::apply_remote_batch(&mut filter.live(), &changes).unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Applied));
    assert_eq!(filter.loaded.state.bans().unwrap().len(), 5_000);
    let again = sipguard::fleet::apply_remote_batch(&mut filter.live(), &changes).unwrap();
    assert!(again.iter().all(|o| *o == Outcome::Same));
    assert!(
        own_state(&filter.loaded.state)
            .unwrap()
            .keys()
            .all(|key| !matches!(key, Key::Ban(_)))
    );
    let withdrawals: Vec<(Key, Option<&Value>)> = keys.iter().map(|key| (*key, None)).collect();
    let lifted = sipguard::fleet::apply_remote_batch(&mut filter.live(), &withdrawals).unwrap();
    assert!(lifted.iter().all(|o| *o == Outcome::Applied));
    assert!(filter.loaded.state.bans().unwrap().is_empty());
}
