//! Provider lists by URL and DNS with real servers in the lab's namespaces: `sipguard run` with a
//! policy whose allow entries name a text list, a JSON list (served by a small HTTP server with
//! ETags) and a hostname and an SRV name (served by dnsmasq). Carriers from each get SIP through,
//! unknown sources do not; changes are admitted after a refresh; a failing server, a dead DNS
//! server and a list that shrinks by 90 % leave the last good lists in force (metrics say so);
//! unchanged lists are fetched with conditional GETs (304, counted by the server); a restart
//! with every source down, after a detach, brings the lists back from the cache.

use std::{
    collections::HashMap,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sipguard::cli::client;
use sipguard_tests::{
    lab::{Lab, SBC_IF, UNKNOWN_V4, UdpCounter, send_udp, wait_until},
    list_server::ListServer,
    netns::{NetNs, add_addr},
    pins::TempPinRoot,
    require_root, sipguard_bin,
};

const LISTEN: &str = "127.0.0.1:9968";
const OPTIONS: &[u8] = b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
const HTTP_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 80);
const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 53);
/// In the text list first, replaced by `LIST_NEW`.
const LIST_OLD: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 1);
const LIST_NEW: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 4);
/// One of the nine other entries of the text list (dropped by the 90 % shrink).
const LIST_OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
/// sip.carrier.test's A record, then `DNS_NEW`.
const DNS_OLD: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);
const DNS_NEW: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 5);
/// The target of _sip._udp.carrier.test.
const SRV_TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 3);
/// In the JSON list.
const JSON_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 7);

const TEXT_PATH: &str = "/carrier-b.txt";
const JSON_PATH: &str = "/carrier-j.json";

fn text_list(first: Ipv4Addr, others: usize) -> String {
    let mut body = format!("# carrier B signalling\n{first}\n");
    for i in 0..others {
        body.push_str(&format!("198.18.7.{i}  # edge {i}\n"));
    }
    body
}

fn policy() -> String {
    format!(
        r#"mode = "enforce"
[trunk]
udp = [5060]

[lists]
refresh = "1s"
timeout = "2s"
dns_server = "{DNS_ADDR}"

[[allow]]
name = "carrier-b"
urls = ["http://{HTTP_ADDR}:8080{TEXT_PATH}"]

[[allow]]
name = "carrier-j"
urls = ["http://{HTTP_ADDR}:8080{JSON_PATH}"]
json_path = "prefixes[].ip_prefix"

[[allow]]
name = "carrier-c"
hosts = ["sip.carrier.test", "_sip._udp.carrier.test"]
"#
    )
}

/// A child process killed (and reaped) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn hangup(&self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGHUP) };
    }

    fn stop(mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// dnsmasq in the peer namespace, authoritative for carrier.test, answering only from `records`.
fn dnsmasq(peer: &NetNs, a_record: Ipv4Addr) -> Running {
    let child = peer
        .command("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            &format!("--listen-address={DNS_ADDR}"),
            "--port=53",
            "--local=/carrier.test/",
            &format!("--host-record=sip.carrier.test,{a_record}"),
            "--srv-host=_sip._udp.carrier.test,edge.carrier.test,5060",
            &format!("--host-record=edge.carrier.test,{SRV_TARGET},2001:db8:5::3"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (scripts/setup installs it)");
    Running(child)
}

struct Setup {
    lab: Lab,
    pins: TempPinRoot,
    dir: tempfile::TempDir,
}

impl Setup {
    fn cli(&self) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--netns", self.lab.sbc.name()])
            .arg("--journal-dir")
            .arg(self.dir.path().join("journal"))
            .arg("--lists-dir")
            .arg(self.lists_dir());
        command
    }

    fn lists_dir(&self) -> PathBuf {
        self.dir.path().join("lists")
    }

    fn start_daemon(&self) -> Running {
        let child = self
            .cli()
            .args(["run", "--iface", SBC_IF, "--xdp-mode", "native"])
            .args(["--listen", LISTEN, "--events", "/dev/null"])
            .arg("--policy")
            .arg(self.dir.path().join("policy.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let running = Running(child);
        assert!(
            wait_until(Duration::from_secs(30), || self.get("/healthz").is_some()),
            "the daemon answers: {}",
            self.log()
        );
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<String> {
        let path = path.to_string();
        self.lab
            .sbc
            .run(move || client::get(LISTEN.parse().unwrap(), &path, Duration::from_secs(10)))
            .ok()
            .and_then(std::result::Result::ok)
            .flatten()
    }

    /// A sample of /metrics by name and label fragments.
    fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let text = self.get("/metrics")?;
        text.lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .next()
    }

    fn outcome_is(&self, list: &str, source: &str, outcome: &str) -> bool {
        self.metric(
            "sipguard_remote_list_outcome",
            &[
                &format!("list=\"{list}\""),
                &format!("source=\"{source}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        ) == Some(1.0)
    }

    fn allowlist(&self) -> String {
        let output = self
            .cli()
            .args(["allow", "list", "--iface", SBC_IF, "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends 3 datagrams from each source; how many of each reached the SBC's socket.
    fn admitted(&self, sources: &[Ipv4Addr]) -> HashMap<Ipv4Addr, usize> {
        let counter = UdpCounter::start(&self.lab.sbc, 5060).unwrap();
        let sent = sources.to_vec();
        self.lab
            .peer
            .run(move || {
                for source in sent {
                    let dest = SocketAddr::new(Lab::sbc_addr(false), 5060);
                    send_udp(source.into(), dest, 3, OPTIONS).unwrap();
                }
            })
            .unwrap();
        let counts = counter.finish(Duration::from_millis(300));
        sources
            .iter()
            .map(|source| {
                (
                    *source,
                    counts.get(&IpAddr::from(*source)).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// `allowed` get all 3 datagrams through, `refused` none.
    fn check_admission(&self, when: &str, allowed: &[Ipv4Addr], refused: &[Ipv4Addr]) {
        let sources: Vec<Ipv4Addr> = allowed.iter().chain(refused).copied().collect();
        let counts = self.admitted(&sources);
        for source in allowed {
            assert_eq!(counts[source], 3, "{when}: {source} admitted ({counts:?})");
        }
        for source in refused {
            assert_eq!(counts[source], 0, "{when}: {source} dropped ({counts:?})");
        }
    }
}

#[test]
fn provider_lists_from_http_and_dns_are_refreshed_kept_through_failures_and_cached() {
    require_root();
    let lab = Lab::new("plists").unwrap();
    for addr in [
        HTTP_ADDR, DNS_ADDR, LIST_OLD, LIST_NEW, LIST_OTHER, DNS_OLD, DNS_NEW, SRV_TARGET,
        JSON_ADDR,
    ] {
        add_addr(&lab.peer, "peer0", &format!("{addr}/15")).unwrap();
    }
    let setup = Setup {
        lab,
        pins: TempPinRoot::new("plists"),
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(setup.dir.path().join("policy.toml"), policy()).unwrap();
    let server =
        ListServer::start(&setup.lab.peer, SocketAddr::new(HTTP_ADDR.into(), 8080)).unwrap();
    server.set(TEXT_PATH, &text_list(LIST_OLD, 9));
    server.set(
        JSON_PATH,
        &format!(r#"{{"prefixes":[{{"ip_prefix":"{JSON_ADDR}/32","region":"x"}}]}}"#),
    );
    let dns = dnsmasq(&setup.lab.peer, DNS_OLD);
    let text_source = format!("http://{HTTP_ADDR}:8080{TEXT_PATH}");

    // `sipguard check` reads the policy without fetching anything; `--fetch` fetches once.
    let check = |fetch: bool| {
        let mut command = setup.cli();
        command
            .arg("check")
            .arg(setup.dir.path().join("policy.toml"));
        if fetch {
            command.arg("--fetch");
        }
        command.output().unwrap()
    };
    let checked = check(false);
    assert!(checked.status.success(), "{checked:?}");
    assert_eq!(
        server.counts(TEXT_PATH).requests,
        0,
        "check fetches nothing"
    );
    let checked = check(true);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{checked:?}");
    assert_eq!(said.matches(": ok (").count(), 4, "{said}");
    assert_eq!(server.counts(TEXT_PATH).requests, 1);
    assert_eq!(
        server.counts(TEXT_PATH).conditional,
        0,
        "check --fetch uses no cache"
    );
    assert!(!setup.lists_dir().exists(), "check --fetch keeps nothing");

    let daemon = setup.start_daemon();
    for (list, source) in [
        ("carrier-b", text_source.as_str()),
        ("carrier-c", "sip.carrier.test"),
        ("carrier-c", "_sip._udp.carrier.test"),
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || setup
                .outcome_is(list, source, "ok")),
            "{list} {source} fetched: {}",
            setup.log()
        );
    }
    setup.check_admission(
        "at start",
        &[LIST_OLD, LIST_OTHER, DNS_OLD, SRV_TARGET, JSON_ADDR],
        &[UNKNOWN_V4, LIST_NEW, DNS_NEW],
    );
    assert_eq!(
        setup.metric(
            "sipguard_remote_list_entries",
            &[&format!("source=\"{text_source}\"")]
        ),
        Some(10.0)
    );
    assert_eq!(
        setup.metric(
            "sipguard_remote_list_entries",
            &["source=\"_sip._udp.carrier.test\""]
        ),
        Some(2.0),
        "the SRV target's A and AAAA"
    );

    // The lists' families pass promtool's checks.
    let metrics = setup.get("/metrics").expect("metrics");
    assert!(
        metrics.contains("sipguard_remote_list_refreshes_total{"),
        "{metrics}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Unchanged lists are asked for with If-None-Match and answered 304.
    assert!(
        wait_until(Duration::from_secs(10), || server
            .counts(TEXT_PATH)
            .not_modified
            >= 2),
        "conditional GETs: {:?}",
        server.counts(TEXT_PATH)
    );
    let counts = server.counts(TEXT_PATH);
    assert!(counts.conditional >= counts.not_modified && counts.requests > counts.not_modified);

    // The carriers change: a new address in the list, a new A record.
    server.set(TEXT_PATH, &text_list(LIST_NEW, 9));
    dns.stop();
    let dns = dnsmasq(&setup.lab.peer, DNS_NEW);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let list = setup.allowlist();
            list.contains(&format!("\"{LIST_NEW}"))
                && list.contains(&format!("\"{DNS_NEW}"))
                && !list.contains(&format!("\"{LIST_OLD}"))
                && !list.contains(&format!("\"{DNS_OLD}"))
        }),
        "the changes are applied: {}",
        setup.allowlist()
    );
    setup.check_admission(
        "after the change",
        &[LIST_NEW, LIST_OTHER, DNS_NEW, SRV_TARGET, JSON_ADDR],
        &[UNKNOWN_V4, LIST_OLD, DNS_OLD],
    );
    let history = setup
        .cli()
        .args(["history", "--iface", SBC_IF])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("lists refresh"), "journaled: {history}");

    // Someone applies another policy file by hand: the daemon no longer applies its own (with a
    // changed list) over it. Applying the daemon's file again (which fetches the lists once)
    // hands the interface back.
    let other = setup.dir.path().join("other.toml");
    std::fs::write(&other, format!("{}# edited by hand\n", policy())).unwrap();
    let apply = |file: &std::path::Path| {
        let output = setup
            .cli()
            .args(["apply", "--iface", SBC_IF])
            .arg(file)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    apply(&other);
    let extra = Ipv4Addr::new(198, 18, 8, 1);
    server.set(TEXT_PATH, &format!("{}{extra}\n", text_list(LIST_NEW, 9)));
    assert!(
        wait_until(Duration::from_secs(10), || setup.log().contains(
            "the running policy is not the one this daemon was started with"
        )),
        "{}",
        setup.log()
    );
    assert!(!setup.allowlist().contains(&format!("\"{extra}")));
    apply(&setup.dir.path().join("policy.toml"));
    assert!(setup.allowlist().contains(&format!("\"{extra}")));
    server.set(TEXT_PATH, &text_list(LIST_NEW, 9));
    assert!(
        wait_until(Duration::from_secs(10), || !setup
            .allowlist()
            .contains(&format!("\"{extra}"))),
        "the daemon applies its lists again"
    );

    // SIGHUP with an edited file: applied with the lists in force, and the refresh follows the
    // new file (a change after it is applied).
    std::fs::write(
        setup.dir.path().join("policy.toml"),
        format!("{}# reloaded\n", policy()),
    )
    .unwrap();
    daemon.hangup();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let history = setup
                .cli()
                .args(["history", "--iface", SBC_IF, "--json"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&history.stdout).contains("(SIGHUP)")
        }),
        "the reload is journaled: {}",
        setup.log()
    );
    let list = setup.allowlist();
    for kept in [LIST_NEW, LIST_OTHER, DNS_NEW, SRV_TARGET, JSON_ADDR] {
        assert!(list.contains(&format!("\"{kept}")), "{kept} kept: {list}");
    }
    server.set(TEXT_PATH, &format!("{}{extra}\n", text_list(LIST_NEW, 9)));
    assert!(
        wait_until(Duration::from_secs(10), || setup
            .allowlist()
            .contains(&format!("\"{extra}"))),
        "the refresh applies after the reload: {}",
        setup.log()
    );
    server.set(TEXT_PATH, &text_list(LIST_NEW, 9));
    assert!(wait_until(Duration::from_secs(10), || !setup
        .allowlist()
        .contains(&format!("\"{extra}"))));

    // The HTTP server fails and the DNS server goes away: the last good lists stay.
    server.set_status(TEXT_PATH, 500);
    dns.stop();
    for (list, source) in [
        ("carrier-b", text_source.as_str()),
        ("carrier-c", "sip.carrier.test"),
        ("carrier-c", "_sip._udp.carrier.test"),
    ] {
        assert!(
            wait_until(Duration::from_secs(20), || setup
                .outcome_is(list, source, "failed")),
            "{list} {source} failed: {}",
            setup.log()
        );
    }
    let age_labels = [format!("source=\"{text_source}\"")];
    let age_labels: Vec<&str> = age_labels.iter().map(String::as_str).collect();
    let age = setup
        .metric("sipguard_remote_list_age_seconds", &age_labels)
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || setup
            .metric("sipguard_remote_list_age_seconds", &age_labels)
            .is_some_and(|now| now > age)),
        "the age grows while the source fails"
    );
    setup.check_admission(
        "while the sources fail",
        &[LIST_NEW, LIST_OTHER, DNS_NEW, SRV_TARGET, JSON_ADDR],
        &[UNKNOWN_V4, LIST_OLD],
    );

    // The list comes back with 1 of its 10 entries: held back, the 10 stay in force.
    server.set(TEXT_PATH, &text_list(LIST_NEW, 0));
    assert!(
        wait_until(Duration::from_secs(10), || setup.outcome_is(
            "carrier-b",
            &text_source,
            "held_back"
        )),
        "held back: {}",
        setup.log()
    );
    assert_eq!(
        setup.metric(
            "sipguard_remote_list_entries",
            &[&format!("source=\"{text_source}\"")]
        ),
        Some(10.0)
    );
    setup.check_admission(
        "with the shrunk list held back",
        &[LIST_NEW, LIST_OTHER],
        &[UNKNOWN_V4],
    );

    // A restart with every source down, the filter detached in between: the cache has them.
    daemon.stop();
    drop(server);
    let detach = setup
        .cli()
        .args(["detach", "--iface", SBC_IF])
        .output()
        .unwrap();
    assert!(detach.status.success(), "{detach:?}");
    let cached = std::fs::read_dir(setup.lists_dir()).unwrap().count();
    assert_eq!(cached, 4, "one cache file per source");
    let daemon = setup.start_daemon();
    assert!(setup.outcome_is("carrier-b", &text_source, "failed"));
    setup.check_admission(
        "after a restart with the sources down",
        &[LIST_NEW, LIST_OTHER, DNS_NEW, SRV_TARGET, JSON_ADDR],
        &[UNKNOWN_V4, LIST_OLD, DNS_OLD],
    );
    daemon.stop();
    let _ = setup.cli().args(["detach", "--iface", SBC_IF]).output();
}
