//! `sipguard run` against real traffic through veth: the JSON-lines event log, `sipguard events`
//! and `sipguard top`, `/metrics` checked by promtool and scraped by a real Prometheus server,
//! and daemon restarts that leave filtering and counters untouched.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sipguard::{cli::client, events::EventRecord};
use sipguard_tests::{
    lab::{
        ALLOWED_V4, DENIED_V6, Lab, Pinned, SBC_IF, UNKNOWN_V4, UdpCounter, send_udp, wait_until,
    },
    netns::NetNs,
    pins::TempPinRoot,
    sipguard_bin,
};

const LISTEN: &str = "127.0.0.1:9968";
const OPTIONS: &[u8] = b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";

/// A child process killed (and reaped) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// SIGTERM and wait: the daemon's orderly stop.
    fn stop(mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

struct Setup {
    lab: Lab,
    pins: TempPinRoot,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.toml"),
            sipguard::policy::EXAMPLE_POLICY,
        )
        .unwrap();
        Setup {
            lab: Lab::new(tag).unwrap(),
            pins: TempPinRoot::new(&format!("daemon-{tag}")),
            dir,
        }
    }

    fn events_file(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    fn cli(&self) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--netns", self.lab.sbc.name()]);
        command
    }

    fn start_daemon(&self) -> Running {
        let child = self
            .cli()
            .args([
                "run",
                "--iface",
                SBC_IF,
                "--xdp-mode",
                "native",
                "--listen",
                LISTEN,
            ])
            .arg("--policy")
            .arg(self.dir.path().join("policy.toml"))
            .arg("--events")
            .arg(self.events_file())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running(child);
        assert!(
            wait_until(Duration::from_secs(20), || self.get("/healthz").is_some()),
            "the daemon answers"
        );
        running
    }

    /// GET from inside the SBC namespace, where the daemon listens on loopback.
    fn get(&self, path: &str) -> Option<String> {
        let path = path.to_string();
        self.lab
            .sbc
            .run(move || client::get(LISTEN.parse().unwrap(), &path, Duration::from_secs(10)))
            .ok()
            .and_then(|r| r.ok())
            .flatten()
    }

    /// Sends from CPU 0: veth delivers on the sender's CPU, and the per-source event budget
    /// (and the suppressed count it carries) is per CPU.
    fn send(&self, source: IpAddr, count: usize) {
        let dest = SocketAddr::new(Lab::sbc_addr(source.is_ipv6()), 5060);
        self.lab
            .peer
            .run(move || {
                let _pinned = Pinned::to(0);
                send_udp(source, dest, count, OPTIONS)
            })
            .unwrap()
            .unwrap();
    }
}

fn log_lines(path: &Path) -> Vec<EventRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON event"))
        .collect()
}

/// The value of one sample in Prometheus text, by metric name and label fragments.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .next()
}

#[test]
fn the_daemon_logs_events_serves_views_and_metrics_that_prometheus_scrapes() {
    let setup = Setup::new("run");
    let _daemon = setup.start_daemon();
    setup.send(UNKNOWN_V4.into(), 30);
    setup.send(DENIED_V6.into(), 20);
    setup.send(ALLOWED_V4.into(), 10);
    // After the per-source event budget refills (1/s), one more drop reports the suppressed ones.
    std::thread::sleep(Duration::from_millis(1200));
    setup.send(UNKNOWN_V4.into(), 1);
    let file = setup.events_file();
    // 5 + 1 events of the unknown source, 5 of the denied one.
    assert!(wait_until(Duration::from_secs(10), || log_lines(&file)
        .len()
        >= 11));
    let events = log_lines(&file);
    let unknown: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.src == Some(UNKNOWN_V4.into()))
        .collect();
    let denied: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.src == Some(DENIED_V6.into()))
        .collect();
    assert!(
        events.iter().all(|e| e.src != Some(ALLOWED_V4.into())),
        "no event for allowed traffic"
    );
    assert_eq!(
        unknown.len(),
        6,
        "burst of 5, then one carrying the suppressed count"
    );
    assert_eq!(denied.len(), 5);
    let reported: u32 = unknown.iter().map(|e| 1 + e.suppressed_before).sum();
    assert_eq!(
        reported, 31,
        "every drop of the source is accounted in its events"
    );
    for event in &events {
        assert_eq!(
            event.interface,
            format!("{SBC_IF}@{}", setup.lab.sbc.name())
        );
        assert_eq!(event.sip_method.as_deref(), Some("OPTIONS"));
        assert_eq!(
            (event.transport.as_str(), event.dport, event.zone.as_str()),
            ("udp", 5060, "trunk")
        );
    }
    assert_eq!(unknown[0].reason, "not_allowlisted");
    assert_eq!(denied[0].reason, "denylisted");

    // `sipguard events` and `sipguard top` read the daemon (nothing consumed).
    let output = setup
        .cli()
        .args(["events", "--json", "--limit", "100"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let via_cli: Vec<EventRecord> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(via_cli.len(), events.len());
    let output = setup.cli().args(["top", "--json"]).output().unwrap();
    let top: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(top["sources"][0]["source"], UNKNOWN_V4.to_string());
    assert_eq!(top["sources"][0]["drops"], 31);

    // The exposition passes promtool's checks and its counters match the packets sent.
    let metrics = setup.get("/metrics").expect("metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
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
    let reason = |r: &str| format!("reason=\"{r}\"");
    assert_eq!(
        sample(
            &metrics,
            "sipguard_packets_total",
            &[&reason("not_allowlisted"), "outcome=\"dropped\""]
        ),
        Some(31.0)
    );
    assert_eq!(
        sample(&metrics, "sipguard_packets_total", &[&reason("denylisted")]),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "sipguard_packets_total",
            &[&reason("allowlisted")]
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(&metrics, "sipguard_events_total", &["result=\"emitted\""]),
        Some(11.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "sipguard_events_total",
            &["result=\"suppressed\""]
        ),
        Some(40.0)
    );
    assert_eq!(
        sample(&metrics, "sipguard_events_written_total", &[]),
        Some(11.0)
    );
    assert_eq!(
        sample(&metrics, "sipguard_attached", &["xdp_mode=\"native\""]),
        Some(1.0)
    );
    assert!(
        !metrics.contains(&UNKNOWN_V4.to_string()),
        "no per-IP label"
    );

    // A real Prometheus server scrapes the exporter; its HTTP API returns the same counts.
    let prometheus = start_prometheus(&setup.lab.sbc, setup.dir.path());
    let query = "/api/v1/query?query=sipguard_packets_total%7Breason%3D%22not_allowlisted%22%2Coutcome%3D%22dropped%22%7D";
    let mut answer = String::new();
    let scraped = wait_until(Duration::from_secs(60), || {
        answer = get_from(&setup.lab.sbc, "127.0.0.1:9090", query).unwrap_or_default();
        answer.contains("\"31\"")
    });
    assert!(scraped, "Prometheus query answer: {answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["data"]["result"][0]["metric"]["interface"],
        format!("{SBC_IF}@{}", setup.lab.sbc.name())
    );
    drop(prometheus);
}

fn get_from(ns: &NetNs, addr: &str, path: &str) -> Option<String> {
    let (addr, path) = (addr.parse().unwrap(), path.to_string());
    ns.run(move || client::get(addr, &path, Duration::from_secs(5)))
        .ok()?
        .ok()?
}

fn start_prometheus(ns: &NetNs, dir: &Path) -> Running {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sipguard\n    static_configs:\n      - targets: ['{LISTEN}']\n"
        ),
    )
    .unwrap();
    let child = ns
        .command("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

#[test]
fn restarting_the_daemon_during_traffic_leaves_filtering_and_counters_untouched() {
    let setup = Setup::new("restart");
    let daemon = setup.start_daemon();
    let listener = UdpCounter::start(&setup.lab.sbc, 5060).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sender = setup
        .lab
        .peer
        .spawn(move || {
            let allowed = UdpSocket::bind(SocketAddr::new(ALLOWED_V4.into(), 0)).unwrap();
            let unknown = UdpSocket::bind(SocketAddr::new(UNKNOWN_V4.into(), 0)).unwrap();
            let dest = SocketAddr::new(Lab::sbc_addr(false), 5060);
            let (mut sent_allowed, mut sent_unknown) = (0usize, 0usize);
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..40_000 {
                if flag.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                sent_allowed += usize::from(allowed.send_to(OPTIONS, dest).is_ok());
                sent_unknown += usize::from(unknown.send_to(OPTIONS, dest).is_ok());
                std::thread::sleep(Duration::from_micros(500));
            }
            (sent_allowed, sent_unknown)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    daemon.stop();
    std::thread::sleep(Duration::from_millis(500));
    // Without a daemon the kernel keeps filtering; then a new daemon takes over.
    let daemon = setup.start_daemon();
    std::thread::sleep(Duration::from_millis(500));
    drop(daemon);
    std::thread::sleep(Duration::from_millis(300));
    let daemon = setup.start_daemon();
    stop.store(true, Ordering::Relaxed);
    let (sent_allowed, sent_unknown) = sender.join().unwrap();
    let received = listener.finish(Duration::from_millis(300));
    assert!(sent_allowed > 200);
    assert_eq!(
        received.get(&ALLOWED_V4.into()),
        Some(&sent_allowed),
        "no allowed datagram lost"
    );
    assert_eq!(
        received.get(&UNKNOWN_V4.into()),
        None,
        "no unknown datagram admitted"
    );
    // The new daemon's counters are the kernel's: they include the traffic of every daemon's
    // lifetime and of the gaps between them.
    let metrics = setup.get("/metrics").unwrap();
    assert_eq!(
        sample(
            &metrics,
            "sipguard_packets_total",
            &["reason=\"allowlisted\""]
        ),
        Some(sent_allowed as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "sipguard_packets_total",
            &["reason=\"not_allowlisted\""]
        ),
        Some(sent_unknown as f64)
    );
    daemon.stop();
    // Every daemon appended to the same log.
    assert!(!log_lines(&setup.events_file()).is_empty());
}
