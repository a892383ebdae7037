//! The SBC reporting auth failures itself, as README's Kamailio configuration does for what the
//! egress program cannot read: Kamailio's `http_client` calls `POST /api/strike` on `sipguard
//! run` for every request whose credentials fail, and the reported client is banned at the
//! threshold (reason `auth_failures`).
//!
//! Kamailio listens on TCP 5080 here, a port in no zone of the policy: the egress program never
//! sees these answers, so every failure counted is one the API received.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sipguard::{
    cli::client,
    state::{State, Target},
};
use sipguard_common::abi::BanReason;
use sipguard_tests::{
    answers::{Kamailio, ban_reason_of, failures_of},
    lab::{DENIED_V4, Lab, SBC_IF, wait_until},
    netns::NetNs,
    pins::TempPinRoot,
    sipguard_bin,
};

const LISTEN: &str = "127.0.0.1:9968";

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
[auth_failures]
threshold = 3
window = "1h"
ttl = "1h"
"#;

/// README's route, with `$proto == "tcp"` where the README has TLS and WebSocket.
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=tcp:198.18.0.1:5080

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "http_client.so"
modparam("http_client", "connection_timeout", 1)

request_route {
	if (is_method("REGISTER")) {
		if (!pv_www_authenticate("$td", "lab-secret", "0")) {
			if (is_present_hf("Authorization")) route(AUTH_FAILED);
			www_challenge("$td", "0");
			exit;
		}
		sl_send_reply("200", "OK");
		exit;
	}
	sl_send_reply("403", "Forbidden");
}

route[AUTH_FAILED] {
	if ($proto == "tcp") {
		http_client_query("http://127.0.0.1:9968/api/strike",
			"{\"address\":\"$si\",\"reason\":\"auth_failures\"}",
			"Content-Type: application/json", "$var(strike)");
		xlog("L_NOTICE", "SG-STRIKE $si $var(strike)\n");
	}
}
"#;

/// REGISTER, 401, REGISTER with a wrong password, 401.
const WRONG_PASSWORD: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="wrong password over tcp">
  <send><![CDATA[
REGISTER sip:[remote_ip]:[remote_port];transport=tcp SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:1001@[local_ip]:[local_port];transport=tcp>
Max-Forwards: 70
Expires: 300
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send><![CDATA[
REGISTER sip:[remote_ip]:[remote_port];transport=tcp SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:1001@[local_ip]:[local_port];transport=tcp>
[authentication username=1001 password=not-the-password]
Max-Forwards: 70
Expires: 300
Content-Length: 0

]]></send>
  <recv response="401"/>
</scenario>
"#;

/// A child process stopped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Kamailio on TCP 5080, ready once it accepts a connection there.
fn kamailio(ns: &NetNs, dir: &Path) -> Kamailio {
    let listening = || {
        ns.run(|| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 5080)),
                Duration::from_millis(200),
            )
            .is_ok()
        })
        .unwrap_or(false)
    };
    Kamailio::start(ns, dir, KAMAILIO_CFG, listening)
}

/// `calls` wrong-password registrations over TCP from the guesser, one after the other.
fn guess(ns: &NetNs, dir: &Path, calls: u32) {
    fs::write(dir.join("guess.xml"), WRONG_PASSWORD).unwrap();
    let _ = ns
        .command("sipp")
        .args(["-sf", "guess.xml", "198.18.0.1:5080", "-t", "t1"])
        .args(["-i", &DENIED_V4.to_string(), "-p", "5066"])
        .args(["-r", "2", "-m", &calls.to_string(), "-l", "1"])
        .args(["-nostdin", "-recv_timeout", "3000", "-timeout", "30s"])
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp (installed by scripts/setup)");
}

fn failures_and_ban(target: &Target) -> (u32, Option<BanReason>) {
    let state = State::open(target).unwrap();
    (
        failures_of(&state, DENIED_V4.into()),
        ban_reason_of(&state, DENIED_V4.into()),
    )
}

#[test]
fn kamailio_reports_failed_credentials_through_the_api_and_the_client_is_banned() {
    let lab = Lab::new("fbs").unwrap();
    let pins = TempPinRoot::new("strike-api");
    let dir = tempfile::Builder::new()
        .prefix("sipguard-strike")
        .tempdir()
        .unwrap();
    fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let daemon = Running(
        Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(pins.path())
            .arg("--journal-dir")
            .arg(dir.path().join("journal"))
            .args(["--netns", lab.sbc.name(), "run", "--iface", SBC_IF])
            .args(["--xdp-mode", "native", "--listen", LISTEN, "--policy"])
            .arg(dir.path().join("policy.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let healthy = || {
        lab.sbc
            .run(|| client::get(LISTEN.parse().unwrap(), "/healthz", Duration::from_secs(5)))
            .ok()
            .and_then(Result::ok)
            .flatten()
            .is_some()
    };
    assert!(
        wait_until(Duration::from_secs(20), healthy),
        "the daemon answers"
    );
    let _kamailio = kamailio(&lab.sbc, dir.path());
    let target = Target::new(SBC_IF, Some(lab.sbc.name()), pins.path()).unwrap();

    guess(&lab.peer, dir.path(), 2);
    let log = fs::read_to_string(dir.path().join("kamailio.log")).unwrap();
    let reported = log
        .lines()
        .filter(|l| l.contains("SG-STRIKE 198.18.66.10"))
        .count();
    assert_eq!(
        reported, 2,
        "Kamailio reported each failed credential:\n{log}"
    );
    assert_eq!(failures_and_ban(&target), (2, None));

    guess(&lab.peer, dir.path(), 1);
    assert_eq!(
        failures_and_ban(&target),
        (0, Some(BanReason::AuthFailures)),
        "the third report bans (and the count starts over)"
    );
    let log = fs::read_to_string(dir.path().join("kamailio.log")).unwrap();
    assert!(
        log.contains("\"banned\":true"),
        "the API answered the ban to Kamailio:\n{log}"
    );
    // Each strike is journaled with the API caller and the call.
    let history = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(pins.path())
        .arg("--journal-dir")
        .arg(dir.path().join("journal"))
        .args([
            "--netns",
            lab.sbc.name(),
            "history",
            "--iface",
            SBC_IF,
            "--json",
        ])
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let strikes: Vec<&serde_json::Value> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] == "strike")
        .collect();
    assert_eq!(strikes.len(), 3, "{history:#}");
    for strike in &strikes {
        assert!(
            strike["user"]
                .as_str()
                .unwrap()
                .starts_with("api 127.0.0.1:")
        );
        let call = strike["command"].as_str().unwrap();
        assert!(
            call.starts_with("POST /api/strike") && call.contains("198.18.66.10"),
            "{call}"
        );
    }
    let described = strikes[2]["described"].to_string();
    assert!(
        described.contains("198.18.66.10: banned (auth_failures)"),
        "{described}"
    );
    drop(daemon);
}
