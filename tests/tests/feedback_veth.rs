//! The egress program on real answers leaving a real SBC namespace through veth: attached,
//! upgraded and detached with the XDP filter; and Kamailio (the lab's configuration) answering
//! real REGISTERs from sipp with the right and a wrong password.

use std::{
    fs,
    net::{Ipv4Addr, UdpSocket},
    path::Path,
    process::Stdio,
};

use sipguard::{
    dataplane::{AttachRequest, XdpModeChoice, attach, detach, egress_link_status},
    policy::Policy,
    state::{State, Target},
};
use sipguard_common::abi::{AuthState, BanReason, VerifiedSource, answer_stat};
use sipguard_tests::{
    answers::{Kamailio, auth_of, ban_reason_of, verified_of},
    lab::{DENIED_V4, Lab, SBC_IF, SBC_V4, UNKNOWN_V4},
    netns::NetNs,
    pins::TempPinRoot,
};

const KAMAILIO_CFG: &str = include_str!("../src/sip_lab/assets/kamailio.cfg");
const PHONE_REGISTER: &str = include_str!("../src/sip_lab/assets/phone-register.xml");

/// The access zone on 5070 as in the lab; auth failures ban at the 5th.
const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
[classes]
phones = { rate = 50, burst = 100 }
[auth_failures]
threshold = 5
window = "1h"
ttl = "1h"
[verified]
max_lifetime = "1h"
"#;

fn auth(state: &State, addr: Ipv4Addr) -> Option<AuthState> {
    auth_of(state, addr.into())
}

fn verified(state: &State, addr: Ipv4Addr) -> Option<VerifiedSource> {
    verified_of(state, addr.into())
}

fn ban_reason(state: &State, addr: Ipv4Addr) -> Option<BanReason> {
    ban_reason_of(state, addr.into())
}

fn attach_on(lab: &Lab, target: &Target) -> sipguard::dataplane::AttachReport {
    let policy = Policy::parse(POLICY, "feedback-veth.toml").unwrap();
    let target = target.clone();
    lab.sbc
        .run(move || {
            attach(&AttachRequest {
                target,
                xdp_mode: XdpModeChoice::Native,
                policy: Some(&policy),
                mode: None,
            })
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("attach: {e}"))
}

/// The SBC sends `count` answers from its access port to `client`.
fn answer_from_sbc(lab: &Lab, client: Ipv4Addr, payload: &'static [u8], count: usize) {
    lab.sbc
        .run(move || {
            let socket = UdpSocket::bind((SBC_V4, 5070)).unwrap();
            for _ in 0..count {
                socket.send_to(payload, (client, 5064)).unwrap();
            }
        })
        .unwrap();
}

const REFUSAL: &[u8] =
    b"SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/UDP 198.18.66.10:5064;branch=z9hG4bK-1\r\n\
From: <sip:1001@sbc.lab>;tag=a\r\nTo: <sip:1001@sbc.lab>;tag=b\r\nCall-ID: veth@lab\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

#[test]
fn egress_is_attached_upgraded_and_detached_with_the_filter() {
    let lab = Lab::new("fbe").unwrap();
    let pins = TempPinRoot::new("veth-egress");
    let target = Target::new(SBC_IF, Some(lab.sbc.name()), pins.path()).unwrap();
    let first = attach_on(&lab, &target);
    assert_eq!(first.egress, Ok(false), "a new tcx link");
    let link = egress_link_status(&target).expect("the egress link is pinned");
    assert_ne!(link.ifindex, 0);
    answer_from_sbc(&lab, DENIED_V4, REFUSAL, 2);
    let state = State::open(&target).unwrap();
    assert_eq!(auth(&state, DENIED_V4).map(|s| s.failures()), Some(2));

    // An upgrade swaps the program in the same link; the counts go on.
    let second = attach_on(&lab, &target);
    assert_eq!(second.egress, Ok(true), "replaced in its link");
    let upgraded = egress_link_status(&target).expect("still pinned");
    assert_eq!(upgraded.link_id, link.link_id);
    assert_ne!(upgraded.program_id, link.program_id);
    answer_from_sbc(&lab, DENIED_V4, REFUSAL, 1);
    assert_eq!(auth(&state, DENIED_V4).map(|s| s.failures()), Some(3));

    // Detached with the filter (state kept): answers no longer count.
    let report = detach(&target, true).unwrap();
    assert!(report.unlinked);
    assert!(egress_link_status(&target).is_none());
    assert!(!target.egress_link_pin().exists());
    answer_from_sbc(&lab, DENIED_V4, REFUSAL, 3);
    assert_eq!(auth(&state, DENIED_V4).map(|s| s.failures()), Some(3));
    drop(state);
    detach(&target, false).unwrap();
}

/// The lab's Kamailio, ready once its UDP sockets are.
fn kamailio(ns: &NetNs, dir: &Path) -> Kamailio {
    Kamailio::start(ns, dir, KAMAILIO_CFG, || {
        fs::read_to_string(dir.join("kamailio.log"))
            .is_ok_and(|l| l.contains("SO_RCVBUF is finally"))
    })
}

/// sipp as a phone: `calls` registrations from `local`, each ending by itself.
fn sipp(
    ns: &NetNs,
    dir: &Path,
    name: &str,
    scenario: &str,
    local: Ipv4Addr,
    port: u16,
    calls: u32,
) -> (u64, u64) {
    fs::write(dir.join(format!("{name}.xml")), scenario).unwrap();
    // Its exit status says whether every call succeeded; the counts below say how many.
    let _ = ns
        .command("sipp")
        .args(["-sf", &format!("{name}.xml"), "198.18.0.1:5070"])
        .args(["-i", &local.to_string(), "-p", &port.to_string()])
        .args(["-r", "2", "-m", &calls.to_string(), "-l", "1"])
        .args([
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
            &format!("{name}.csv"),
        ])
        .args(["-recv_timeout", "3000", "-timeout", "60s"])
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp (installed by scripts/setup)");
    let csv = fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap_or_default();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
    let column = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}

/// A client that guesses the password of 1001: REGISTER, 401, REGISTER with a wrong password,
/// 401 again (Kamailio challenges anew).
const WRONG_PASSWORD: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="wrong password">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 300
User-Agent: Yealink SIP-T46S
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
[authentication username=1001 password=not-the-password]
Max-Forwards: 70
Expires: 300
User-Agent: Yealink SIP-T46S
Content-Length: 0

]]></send>
  <recv response="401"/>
</scenario>
"#;

#[test]
fn kamailio_answers_ban_a_wrong_password_and_verify_the_right_one() {
    let lab = Lab::new("fbk").unwrap();
    let pins = TempPinRoot::new("veth-kamailio");
    let dir = tempfile::Builder::new()
        .prefix("sipguard-fbk")
        .tempdir()
        .unwrap();
    let _kamailio = kamailio(&lab.sbc, dir.path());
    let target = Target::new(SBC_IF, Some(lab.sbc.name()), pins.path()).unwrap();
    assert_eq!(attach_on(&lab, &target).egress, Ok(false));
    let state = State::open(&target).unwrap();

    // The phone registers three times with its password: verified, never a failure.
    let (ok, failed) = sipp(
        &lab.peer,
        dir.path(),
        "phone",
        PHONE_REGISTER,
        UNKNOWN_V4,
        5062,
        3,
    );
    assert_eq!((ok, failed), (3, 0), "the phone's registrations");
    let phone = verified(&state, UNKNOWN_V4).expect("the phone is verified");
    assert_eq!(phone.registrations, 3);
    assert_eq!(
        phone.expires_at_ns - phone.refreshed_at_ns,
        300_000_000_000,
        "its Expires"
    );
    assert_eq!(auth(&state, UNKNOWN_V4).map_or(0, |s| s.failures()), 0);

    // Six guesses: two challenges each. The first opens the exchange, every later one fails;
    // the 5th failure (the 6th challenge, 3rd guess) bans, and nothing more reaches Kamailio.
    let (_, failed) = sipp(
        &lab.peer,
        dir.path(),
        "guesser",
        WRONG_PASSWORD,
        DENIED_V4,
        5064,
        6,
    );
    assert_eq!(ban_reason(&state, DENIED_V4), Some(BanReason::AuthFailures));
    assert!(
        failed >= 3,
        "the guesses after the ban get no answer: {failed} failed"
    );
    let log = fs::read_to_string(dir.path().join("kamailio.log")).unwrap();
    let reached = log
        .lines()
        .filter(|l| l.contains("SG-REQ") && l.contains(" REGISTER 198.18.66.10 "))
        .count();
    assert!(
        (6..=8).contains(&reached),
        "REGISTERs of the guesser that reached Kamailio: {reached} (6 until the ban)"
    );
    assert_eq!(verified(&state, DENIED_V4), None);
    assert_eq!(
        ban_reason(&state, UNKNOWN_V4),
        None,
        "the phone is untouched"
    );

    // And it registers again meanwhile.
    let (ok, failed) = sipp(
        &lab.peer,
        dir.path(),
        "phone-again",
        PHONE_REGISTER,
        UNKNOWN_V4,
        5062,
        1,
    );
    assert_eq!((ok, failed), (1, 0));
    let stats = state.answer_stats().unwrap();
    assert!(stats[answer_stat::VERIFICATIONS as usize] >= 4);
    assert!(stats[answer_stat::BANS as usize] >= 1);
    drop(state);
    detach(&target, false).unwrap();
}
