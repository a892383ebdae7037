//! `sipguard lockdown` on the real program under `BPF_PROG_TEST_RUN`: who gets in while it is on,
//! that it holds across `apply`, creates no per-source state, and that `off` restores exactly
//! what the policy admitted.

use std::net::Ipv4Addr;

use sipguard_common::{
    abi::{Reason, Zone},
    verdict::Lockdown,
};
use sipguard_tests::{
    frames::Packet,
    harness::{TestFilter, Verdict, drop, pass},
};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 99);

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 1000, burst = 1000 }
[classes]
phones = { rate = 1000, burst = 1000 }
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24"]
"#;

fn options(src: Ipv4Addr, port: u16) -> Vec<u8> {
    Packet::udp4(
        src,
        SBC,
        5062,
        port,
        b"OPTIONS sip:sbc SIP/2.0\r\n\r\n".to_vec(),
    )
    .build()
}

/// The SBC's 200 OK to the phone's REGISTER: the phone becomes a verified source.
fn verify_phone(filter: &mut TestFilter) {
    let ok = b"SIP/2.0 200 OK\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@198.18.2.10>;expires=600\r\n\r\n";
    filter.run_egress(
        &Packet::udp4(SBC, PHONE, 5070, 5062, ok.to_vec()).build(),
        1,
    );
}

/// Each source's OPTIONS to `port` gets its verdict.
fn expect(filter: &mut TestFilter, cases: &[(Ipv4Addr, u16, Verdict)]) {
    for (source, port, verdict) in cases {
        assert_eq!(
            filter.run(&options(*source, *port)),
            *verdict,
            "{source} to {port}"
        );
    }
}

#[test]
fn lockdown_admits_allowlisted_and_verified_sources_only_and_off_restores_the_policy() {
    let mut filter = TestFilter::new(POLICY);
    verify_phone(&mut filter);
    let open = [
        (STRANGER, 5070, pass(Zone::Access, Reason::AccessAdmitted)),
        (PHONE, 5070, pass(Zone::Access, Reason::Verified)),
        (CARRIER, 5070, pass(Zone::Access, Reason::Allowlisted)),
        (STRANGER, 5060, drop(Zone::Trunk, Reason::NotAllowlisted)),
    ];
    expect(&mut filter, &open);

    filter
        .live()
        .set_lockdown(Lockdown::AllowlistedAndVerified)
        .unwrap();
    let tracked = filter.loaded.state.budget_entries();
    expect(
        &mut filter,
        &[
            (
                Ipv4Addr::new(198, 18, 2, 77),
                5070,
                drop(Zone::Access, Reason::Lockdown),
            ),
            (STRANGER, 5070, drop(Zone::Access, Reason::Lockdown)),
            (PHONE, 5070, pass(Zone::Access, Reason::Verified)),
            (CARRIER, 5070, pass(Zone::Access, Reason::Allowlisted)),
        ],
    );
    assert_eq!(
        filter.loaded.state.budget_entries(),
        tracked,
        "no state for the locked out"
    );

    // Verified sources locked out too; an apply keeps the lockdown as it is.
    filter.live().set_lockdown(Lockdown::Allowlisted).unwrap();
    filter.apply(POLICY);
    expect(
        &mut filter,
        &[
            (PHONE, 5070, drop(Zone::Access, Reason::Lockdown)),
            (STRANGER, 5070, drop(Zone::Access, Reason::Lockdown)),
            (CARRIER, 5070, pass(Zone::Access, Reason::Allowlisted)),
        ],
    );

    filter.live().set_lockdown(Lockdown::Off).unwrap();
    expect(&mut filter, &open);
}

#[test]
fn in_monitor_mode_a_lockdown_only_counts() {
    let mut filter = TestFilter::new(&POLICY.replace("enforce", "monitor"));
    filter.live().set_lockdown(Lockdown::Allowlisted).unwrap();
    let verdict = filter.run(&options(STRANGER, 5070));
    assert!(verdict.passed() && verdict.monitored, "{verdict:?}");
    assert_eq!(verdict.reason, Reason::Lockdown);
}
