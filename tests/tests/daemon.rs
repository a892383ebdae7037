//! `sipguard run` against real traffic through veth: the JSON-lines event log, `sipguard events`
//! and `sipguard top`, `/metrics` checked by promtool and scraped by a real Prometheus server,
//! daemon restarts that leave filtering and counters untouched, and an exporter that keeps
//! serving Prometheus through idle and slowloris connections and running out of descriptors.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sipguard::{cli::client, daemon::MAX_CONNECTIONS, events::EventRecord};
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
    fn has_exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }

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
            .and_then(std::result::Result::ok)
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
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the event log names sources: owner only");

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

/// Idle connections the siege keeps open (re-opened whenever the server closes one).
const SIEGE_IDLE: usize = 300;
/// Slowloris connections: a request head sent one byte at a time, never finished.
const SIEGE_SLOW: usize = 40;
/// Length of the siege, and of the window in which Prometheus' scrapes are counted.
const SIEGE_SECONDS: u64 = 18;
/// Scrapes that must succeed in the window (Prometheus tries one a second): two thirds.
const MIN_SCRAPES_DURING_SIEGE: f64 = 12.0;
/// Bounds of the siege's work: connections opened in all and per tick.
const SIEGE_MAX_CONNECTS: usize = 20_000;
const SIEGE_CONNECTS_PER_TICK: usize = 100;
const SIEGE_TICK: Duration = Duration::from_millis(100);
/// A slowloris connection sends one byte every this many ticks.
const SLOW_BYTE_TICKS: u64 = 3;
/// A client on fresh connections asks this often during the siege, with this timeout.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What slowloris connections send, then `a` forever (an endless header value).
const SLOW_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: sipguard\r\nX-Slow: ";

#[derive(Debug, Default)]
struct SiegeReport {
    connects: usize,
    connect_failures: usize,
    closed_by_server: usize,
    slow_bytes: usize,
}

struct Besieger {
    stream: TcpStream,
    slow: bool,
    sent: usize,
}

impl Besieger {
    /// True when the server closed the connection (or answered it, which ends it for us).
    fn closed_by_server(&mut self) -> bool {
        let mut buffer = [0u8; 256];
        match self.stream.read(&mut buffer) {
            Err(error) => error.kind() != ErrorKind::WouldBlock,
            // End of stream, or an answer (which the server sends only when it gives up).
            Ok(0 | 1..) => true,
        }
    }

    /// The next byte of a slowloris request head; false when the server closed the connection.
    fn send_slow_byte(&mut self) -> bool {
        let byte = SLOW_HEAD.get(self.sent).copied().unwrap_or(b'a');
        match self.stream.write(&[byte]) {
            Ok(written) => {
                self.sent += written;
                true
            }
            Err(error) => error.kind() == ErrorKind::WouldBlock,
        }
    }
}

/// Holds [`SIEGE_IDLE`] idle and [`SIEGE_SLOW`] slowloris connections to `addr` for `duration`,
/// re-opening those the server closes. Call inside the server's namespace.
fn siege(addr: SocketAddr, duration: Duration) -> SiegeReport {
    let mut report = SiegeReport::default();
    let mut besiegers: Vec<Option<Besieger>> = (0..SIEGE_IDLE + SIEGE_SLOW).map(|_| None).collect();
    let deadline = Instant::now() + duration;
    let mut tick = 0u64;
    let count = besiegers.len();
    while Instant::now() < deadline {
        let mut connects_left = SIEGE_CONNECTS_PER_TICK;
        // Start each tick elsewhere, so that every connection gets re-opened in turn.
        let start = (tick as usize * SIEGE_CONNECTS_PER_TICK) % count;
        for index in (start..count).chain(0..start) {
            let slot = &mut besiegers[index];
            if slot.as_mut().is_some_and(Besieger::closed_by_server) {
                report.closed_by_server += 1;
                *slot = None;
            }
            if slot.is_none() && connects_left > 0 && report.connects < SIEGE_MAX_CONNECTS {
                connects_left -= 1;
                report.connects += 1;
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(stream) => {
                        stream.set_nonblocking(true).unwrap();
                        *slot = Some(Besieger {
                            stream,
                            slow: index >= SIEGE_IDLE,
                            sent: 0,
                        });
                    }
                    Err(_) => report.connect_failures += 1,
                }
            }
            if tick.is_multiple_of(SLOW_BYTE_TICKS)
                && let Some(besieger) = slot.as_mut().filter(|b| b.slow)
            {
                if besieger.send_slow_byte() {
                    report.slow_bytes += 1;
                } else {
                    report.closed_by_server += 1;
                    *slot = None;
                }
            }
        }
        tick += 1;
        std::thread::sleep(SIEGE_TICK);
    }
    report
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"_-.".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A Prometheus instant query at `time` (Unix seconds): the value of its first result.
fn prometheus_value(ns: &NetNs, expr: &str, time: f64) -> Option<f64> {
    let path = format!(
        "/api/v1/query?query={}&time={time:.3}",
        percent_encode(expr)
    );
    let answer: serde_json::Value =
        serde_json::from_str(&get_from(ns, "127.0.0.1:9090", &path)?).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_the_daemon_through_idle_and_slowloris_connections() {
    let setup = Setup::new("siege");
    let mut daemon = setup.start_daemon();
    let ns = &setup.lab.sbc;
    let _prometheus = start_prometheus(ns, setup.dir.path());
    // Scraping before the siege: Prometheus holds a keep-alive connection, which can be evicted.
    assert!(
        wait_until(Duration::from_secs(60), || prometheus_value(
            ns,
            "up{job=\"sipguard\"}",
            unix_now()
        ) == Some(1.0)),
        "Prometheus scrapes the daemon"
    );
    let siege_time = Duration::from_secs(SIEGE_SECONDS);
    let besieged = ns
        .spawn(move || siege(LISTEN.parse().unwrap(), siege_time))
        .unwrap();
    // Meanwhile a client on fresh connections (the CLI's way) gets answers too.
    let (probes_answered, probes) = ns
        .spawn(move || {
            let deadline = Instant::now() + siege_time;
            let (mut answered, mut tried) = (0, 0);
            while Instant::now() < deadline {
                tried += 1;
                let answer = client::get(LISTEN.parse().unwrap(), "/healthz", PROBE_TIMEOUT);
                answered += usize::from(matches!(answer, Ok(Some(_))));
                std::thread::sleep(PROBE_EVERY);
            }
            (answered, tried)
        })
        .unwrap()
        .join()
        .unwrap();
    let report = besieged.join().unwrap();
    let ended = unix_now();
    assert!(
        probes_answered * 3 >= probes * 2,
        "{probes_answered} of {probes} fresh connections answered; {report:?}"
    );
    assert!(
        report.closed_by_server >= SIEGE_IDLE + SIEGE_SLOW - MAX_CONNECTIONS,
        "the server holds at most {MAX_CONNECTIONS} connections: {report:?}"
    );
    assert!(report.slow_bytes > 0, "{report:?}");
    // Prometheus has stored its scrapes up to the end of the siege.
    assert!(wait_until(Duration::from_secs(15), || {
        prometheus_value(ns, "timestamp(up{job=\"sipguard\"})", unix_now())
            .is_some_and(|last| last > ended)
    }));
    let window = |function: &str, metric: &str| {
        prometheus_value(
            ns,
            &format!("{function}({metric}[{SIEGE_SECONDS}s])"),
            ended,
        )
    };
    let attempts = window("count_over_time", "up{job=\"sipguard\"}").unwrap_or(0.0);
    let scraped = window("sum_over_time", "up{job=\"sipguard\"}").unwrap_or(0.0);
    assert!(
        scraped >= MIN_SCRAPES_DURING_SIEGE,
        "{scraped} of {attempts} scrapes succeeded during the siege; {report:?}"
    );
    let most_open = window("max_over_time", "sipguard_http_connections").unwrap();
    assert!(
        most_open <= MAX_CONNECTIONS as f64,
        "{most_open} connections open"
    );
    eprintln!(
        "siege: {report:?}; {scraped} of {attempts} scrapes succeeded, {probes_answered} of \
         {probes} fresh connections answered, at most {most_open} connections open"
    );

    // Afterwards the daemon still serves.
    assert!(!daemon.has_exited(), "the daemon runs");
    assert_eq!(setup.get("/healthz").as_deref(), Some("ok\n"));
    let metrics = setup.get("/metrics").expect("metrics after the siege");
    assert!(
        sample(&metrics, "sipguard_http_connections_evicted_total", &[])
            .is_some_and(|evicted| evicted > 0.0),
        "idle connections made room"
    );
    assert!(sample(&metrics, "sipguard_packets_total", &[]).is_some());
}

/// Descriptors the daemon may open beyond those it holds when idle: fewer than
/// [`MAX_CONNECTIONS`], so connections exhaust them before the connection bound applies.
const FD_HEADROOM: u64 = 16;
/// Connections opened against the daemon with that headroom; the rest wait in the listen queue.
const FD_EXHAUSTING_CONNECTIONS: usize = 200;

/// Sets the soft open-file limit of a running process (the one EMFILE enforces); returns the
/// previous one. The hard limit stays, so the old soft limit can be restored.
fn set_open_file_limit(pid: i32, soft: u64) -> u64 {
    let mut previous = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on our own child with valid rlimit buffers.
    unsafe {
        let read = libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut previous);
        assert_eq!(read, 0, "prlimit: {}", std::io::Error::last_os_error());
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: previous.rlim_max,
        };
        let set = libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut());
        assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    }
    previous.rlim_cur
}

#[test]
fn the_daemon_keeps_serving_after_running_out_of_file_descriptors() {
    let setup = Setup::new("nofile");
    let mut daemon = setup.start_daemon();
    let pid = daemon.0.id() as i32;
    let open_files =
        || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, std::iter::Iterator::count);
    let limit = open_files() as u64 + FD_HEADROOM;
    let normal_limit = set_open_file_limit(pid, limit);
    // They queue in the listen backlog; the daemon accepts until its descriptors run out.
    let held: Vec<TcpStream> = setup
        .lab
        .sbc
        .run(|| {
            (0..FD_EXHAUSTING_CONNECTIONS)
                .filter_map(|_| TcpStream::connect(LISTEN).ok())
                .collect()
        })
        .unwrap();
    let exhausted = wait_until(Duration::from_secs(10), || {
        daemon.has_exited() || open_files() as u64 >= limit
    });
    // Connections still queue, so the daemon's next accepts fail (EMFILE) for a while.
    std::thread::sleep(Duration::from_secs(1));
    drop(held);
    assert!(
        !daemon.has_exited(),
        "the daemon survived running out of descriptors"
    );
    assert!(exhausted, "the daemon ran out of descriptors");
    assert!(
        wait_until(Duration::from_secs(30), || setup.get("/healthz").is_some()),
        "the daemon serves again"
    );
    // Under the low limit the scrape itself may lack descriptors for the maps (it says so in
    // sipguard_scrape_errors); the exporter answers all the same.
    let metrics = setup.get("/metrics").expect("metrics");
    assert!(
        sample(&metrics, "sipguard_http_accept_errors_total", &[])
            .is_some_and(|errors| errors > 0.0),
        "accepts failed while descriptors were exhausted"
    );
    // With its descriptors back, the daemon reads the kernel again.
    set_open_file_limit(pid, normal_limit);
    assert!(wait_until(Duration::from_secs(10), || {
        setup
            .get("/metrics")
            .is_some_and(|text| sample(&text, "sipguard_packets_total", &[]).is_some())
    }));
}

#[test]
fn the_daemon_sweeps_expired_bans_and_reports_the_ban_table_fill() {
    use sipguard::state::{LiveState, State, Target};
    use sipguard_common::abi::{Ban, BanReason, SourceKey, map_name};
    let setup = Setup::new("sweep");
    let _daemon = setup.start_daemon();
    let target = Target::new(SBC_IF, Some(setup.lab.sbc.name()), setup.pins.path()).unwrap();
    let mut live = LiveState::lock(&target).unwrap();
    // 500 bans that expired long ago (one-off scanners) and one in force.
    let key = |n: u32| {
        let mut key = SourceKey {
            family: 4,
            prefix_len: 32,
            ..SourceKey::default()
        };
        key.addr[..4].copy_from_slice(&(0x0a00_0000 + n).to_be_bytes());
        key
    };
    let expired = Ban {
        banned_at_ns: 1,
        expires_at_ns: 2,
        reason: BanReason::RateExceeded as u8,
        ..Ban::default()
    };
    for n in 0..500 {
        live.insert_ban(&key(n), &expired).unwrap();
    }
    let in_force = Ban {
        expires_at_ns: u64::MAX,
        reason: BanReason::Manual as u8,
        ..Ban::default()
    };
    live.insert_ban(&key(1000), &in_force).unwrap();
    drop(live);
    let bans_in_table = || {
        State::open(&target)
            .unwrap()
            .map_fill()
            .unwrap()
            .iter()
            .find(|fill| fill.name == map_name::BANS)
            .unwrap()
            .entries
    };
    assert_eq!(bans_in_table(), 501);
    let sweep_window = sipguard::daemon::BAN_SWEEP_INTERVAL + sipguard::daemon::BAN_SWEEP_INTERVAL;
    assert!(
        wait_until(sweep_window, || bans_in_table() == 1),
        "the daemon sweeps expired bans without any command: {} left",
        bans_in_table()
    );
    assert_eq!(
        State::open(&target).unwrap().bans().unwrap()[0].0,
        key(1000),
        "the ban in force stays"
    );
    // The exporter shows the table's fill (its snapshot is at most a second old).
    let filled = wait_until(Duration::from_secs(5), || {
        setup.get("/metrics").is_some_and(|metrics| {
            sample(&metrics, "sipguard_map_entries", &["map=\"SG_BANS\""]) == Some(1.0)
        })
    });
    assert!(filled, "sipguard_map_entries{{map=\"SG_BANS\"}} is 1");
    let metrics = setup.get("/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "sipguard_map_capacity", &["map=\"SG_BANS\""]),
        Some(65536.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "sipguard_table_insert_failures_total",
            &["map=\"SG_BANS\""]
        ),
        Some(0.0)
    );
}
