//! The Grafana dashboard (`packaging/grafana/sipguard.json`) against a real Prometheus server
//! scraping a real `sipguard run` on the lab: after traffic that makes drops, bans, destination
//! verdicts, scanner matches, method counts and an SBC verification, every panel's every query
//! (template variables substituted) must parse and return at least one series. The JSON's
//! structure is checked too: unique panel ids, a datasource, targets and a grid position each.

use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sipguard::cli::client;
use sipguard_tests::{
    lab::{
        ALLOWED_V4, DENIED_V6, Lab, SBC_IF, SBC_V4, UNKNOWN_V4, UNKNOWN_V6, send_udp, wait_until,
    },
    netns::NetNs,
    pins::TempPinRoot,
    sipguard_bin,
};

const DASHBOARD: &str = include_str!("../../packaging/grafana/sipguard.json");
const LISTEN: &str = "127.0.0.1:9968";
const PROMETHEUS: &str = "127.0.0.1:9090";

/// What the test substitutes for Grafana's interval variables (Prometheus scrapes every second).
const RATE_INTERVAL: &str = "15s";
const RANGE: &str = "5m";
/// How long every query gets to return a series once the traffic is sent (a bound, not a
/// measurement: Prometheus needs two scrapes of a new series for a rate).
const QUERY_PATIENCE: Duration = Duration::from_secs(60);

/// Panels whose queries are only checked to parse, with the reason. Empty: the lab below makes
/// every metric of the dashboard exist.
const PARSE_ONLY: &[(&str, &str)] = &[];

const OPTIONS: &[u8] = b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
const SCANNER: &[u8] = b"OPTIONS sip:100@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070\r\n\
From: <sip:100@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: dash-scan\r\nCSeq: 1 OPTIONS\r\n\
User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n";
/// Satellite (+881): denied by the example policy's `satellite` rule.
const INVITE_DENIED: &[u8] = b"INVITE sip:+881612345678@198.18.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.2.10:5064;branch=z9hG4bK-d1\r\nFrom: <sip:1001@sbc.lab>;tag=a\r\n\
To: <sip:+881612345678@sbc.lab>\r\nCall-ID: dash-1@lab\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
/// London, dialled nationally: allowed by the `uk` rule.
const INVITE_ALLOWED: &[u8] = b"INVITE sip:02079460000@198.18.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.2.10:5064;branch=z9hG4bK-d2\r\nFrom: <sip:1001@sbc.lab>;tag=b\r\n\
To: <sip:02079460000@sbc.lab>\r\nCall-ID: dash-2@lab\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
/// The SBC's 200 OK to a REGISTER: verifies its client.
const REGISTERED: &[u8] =
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.2.10:5064;branch=z9hG4bK-r\r\n\
From: <sip:1001@sbc.lab>;tag=r\r\nTo: <sip:1001@sbc.lab>;tag=s\r\nCall-ID: dash-reg@lab\r\n\
CSeq: 2 REGISTER\r\nContact: <sip:1001@198.18.2.10:5064>;expires=600\r\nContent-Length: 0\r\n\r\n";

/// A child process killed (and reaped) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command`; the kernel kills it when the thread that started it ends, should this test
/// die before its guards run.
fn spawn(mut command: Command) -> Running {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Running(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}")),
    )
}

fn get_from(ns: &NetNs, addr: &str, path: &str) -> Option<String> {
    let (addr, path) = (addr.parse().unwrap(), path.to_string());
    ns.run(move || client::get(addr, &path, Duration::from_secs(5)))
        .ok()?
        .ok()?
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

/// Prometheus's answer to an instant query, also when it refuses the query (HTTP 400 with a JSON
/// body), or `None` when it does not answer at all.
fn query(ns: &NetNs, expr: &str) -> Option<Value> {
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: prometheus\r\n\r\n",
        percent_encode(expr)
    );
    let answer = ns
        .run(move || -> std::io::Result<String> {
            let mut stream =
                TcpStream::connect_timeout(&PROMETHEUS.parse().unwrap(), Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(request.as_bytes())?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .ok()?
        .ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// `Ok(series)` for a query that parsed, `Err(answer)` otherwise.
fn series(answer: &Value) -> Result<Vec<Value>, String> {
    if answer["status"] != "success" {
        return Err(answer.to_string());
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Every panel (rows' nested panels included) of the dashboard.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// The JSON model: what Grafana needs to import it and what this test relies on.
fn check_structure(dashboard: &Value) -> Vec<(String, String, String)> {
    assert_eq!(dashboard["title"], "sipguard");
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    let version = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&version), "schemaVersion {version}");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let names: Vec<&str> = variables
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["datasource", "instance", "interface"]);
    assert_eq!(variables[0]["type"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");

    let mut ids = HashSet::new();
    let mut cells = HashSet::new();
    let mut targets = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().expect("a title").to_string();
        let id = panel["id"].as_u64().expect("an id");
        assert!(ids.insert(id), "panel id {id} ({title}) used twice");
        let grid = &panel["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(h > 0 && w > 0 && x + w <= 24, "{title}: gridPos {grid}");
        // No two panels share a grid cell.
        for row in y..y + h {
            for column in x..x + w {
                assert!(
                    cells.insert((row, column)),
                    "{title} overlaps another panel"
                );
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: the datasource variable"
        );
        let panel_targets = panel["targets"].as_array().expect("targets");
        assert!(!panel_targets.is_empty(), "{title}: no target");
        let mut refs = HashSet::new();
        for target in panel_targets {
            let reference = target["refId"].as_str().expect("refId");
            assert!(refs.insert(reference), "{title}: refId {reference} twice");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{title}: empty query");
            targets.push((title.clone(), reference.to_string(), expr.to_string()));
        }
    }
    targets
}

/// Grafana's variables as it would expand them for one instance and interface.
fn substitute(expr: &str, instance: &str, interface: &str) -> String {
    let expanded = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$__interval", "2s")
        .replace("$instance", &regex_escape(instance))
        .replace("$interface", &regex_escape(interface));
    assert!(
        !expanded.contains('$'),
        "a variable the test does not know: {expr}"
    );
    expanded
}

/// Grafana escapes regex metacharacters in a single selected value.
fn regex_escape(value: &str) -> String {
    let mut escaped = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// `label_values(METRIC_SELECTOR, LABEL)`: the values Prometheus has for LABEL (none while it
/// does not answer).
fn label_values(ns: &NetNs, definition: &str, instance: &str) -> Vec<String> {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("variable query {definition}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let selector = selector.replace("$instance", &regex_escape(instance));
    // Prometheus may not be up yet: no values.
    let Some(answer) = query(ns, &selector) else {
        return Vec::new();
    };
    let found = series(&answer).unwrap_or_else(|e| panic!("{definition}: {e}"));
    found
        .iter()
        .filter_map(|s| s["metric"][label.trim()].as_str().map(String::from))
        .collect()
}

#[test]
fn dashboard_json_is_well_formed() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let targets = check_structure(&dashboard);
    assert!(targets.len() >= 20, "{} targets", targets.len());
    for (title, _) in PARSE_ONLY {
        assert!(
            targets.iter().any(|(t, _, _)| t == title),
            "PARSE_ONLY names a panel that does not exist: {title}"
        );
    }
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    sipguard_tests::require_root();
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let targets = check_structure(&dashboard);

    let lab = Lab::new("dash").unwrap();
    let pins = TempPinRoot::new("dashboard");
    let dir = tempfile::tempdir().unwrap();
    // The example policy, counting the access zone's requests by method (a panel shows them).
    let policy = sipguard::policy::EXAMPLE_POLICY.replacen(
        "\nclass = \"phones\"\n",
        "\nclass = \"phones\"\ncount_methods = true\n",
        1,
    );
    assert_ne!(policy, sipguard::policy::EXAMPLE_POLICY);
    std::fs::write(dir.path().join("policy.toml"), &policy).unwrap();

    // `--netns` rather than `ip netns exec`, which would hide the pin root's bpffs; the daemon
    // listens inside the namespace.
    let mut daemon = Command::new(sipguard_bin());
    daemon
        .arg("--pin-root")
        .arg(pins.path())
        .args(["--netns", lab.sbc.name()])
        .arg("--journal-dir")
        .arg(dir.path().join("journal"))
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
        .arg(dir.path().join("policy.toml"))
        .arg("--events")
        .arg(dir.path().join("events.jsonl"));
    let _daemon = spawn(daemon);
    assert!(
        wait_until(Duration::from_secs(30), || get_from(
            &lab.sbc, LISTEN, "/healthz"
        )
        .is_some()),
        "the daemon answers"
    );
    let _prometheus = start_prometheus(&lab.sbc, dir.path());

    send_traffic(&lab);

    // The variables, as Grafana would fill them.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let mut instances = Vec::new();
    assert!(
        wait_until(QUERY_PATIENCE, || {
            instances = label_values(&lab.sbc, variables[1]["definition"].as_str().unwrap(), "");
            !instances.is_empty()
        }),
        "the instance variable has values"
    );
    assert_eq!(instances, [LISTEN]);
    let interfaces = label_values(
        &lab.sbc,
        variables[2]["definition"].as_str().unwrap(),
        &instances[0],
    );
    assert_eq!(interfaces, [format!("{SBC_IF}@{}", lab.sbc.name())]);

    // The check below can fail: an unknown metric has no series, a bad query does not parse.
    let unknown = query(&lab.sbc, "sipguard_no_such_metric_total").unwrap();
    assert_eq!(series(&unknown), Ok(Vec::new()));
    let broken = query(&lab.sbc, "sum by (zone (sipguard_packets_total)").unwrap();
    assert!(series(&broken).is_err(), "{broken}");

    let mut failures = Vec::new();
    for (title, reference, expr) in &targets {
        let expr = substitute(expr, &instances[0], &interfaces[0]);
        let parse_only = PARSE_ONLY.iter().any(|(t, _)| t == title);
        let mut last = Value::Null;
        let ok = wait_until(QUERY_PATIENCE, || {
            last = query(&lab.sbc, &expr).unwrap_or(Value::Null);
            match series(&last) {
                Ok(found) => parse_only || !found.is_empty(),
                Err(_) => false,
            }
        });
        if !ok {
            failures.push(format!("{title} [{reference}]: {expr}\n  -> {last}"));
        }
    }
    // The series are the lab's traffic, not only zeros.
    for expr in [
        "sum(sipguard_packets_total{reason=\"not_allowlisted\"})",
        "sum(sipguard_bans_active)",
        "sum(sipguard_signature_matches_total{signature=\"friendly-scanner\"})",
        "sum(sipguard_destination_rule_invites_total{rule=\"satellite\"})",
        "sum(sipguard_destination_rule_invites_total{rule=\"uk\"})",
        "sum(sipguard_sip_requests_total{zone=\"access\", method=\"INVITE\"})",
        "sum(sipguard_sbc_answers_total{kind=\"verifications\"})",
        "sum(sipguard_verified_sources)",
    ] {
        let mut last = Value::Null;
        let positive = wait_until(QUERY_PATIENCE, || {
            last = query(&lab.sbc, expr).unwrap_or(Value::Null);
            last["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        });
        if !positive {
            failures.push(format!("{expr} is not positive: {last}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
}

fn start_prometheus(ns: &NetNs, dir: &Path) -> Running {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: sipguard\n    static_configs:\n      - targets: ['{LISTEN}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = ns.command("prometheus");
    prometheus.args([
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address={PROMETHEUS}"),
    ]);
    spawn(prometheus)
}

/// Drops on the trunk (unknown and denied sources), allowed carrier traffic, a scanner banned
/// in the access zone, two INVITEs the destination firewall judges (one denied, one allowed),
/// and the SBC verifying a phone with a 200 OK to its REGISTER.
fn send_traffic(lab: &Lab) {
    let sbc = |v6: bool, port: u16| SocketAddr::new(Lab::sbc_addr(v6), port);
    lab.peer
        .run(move || {
            send_udp(UNKNOWN_V4.into(), sbc(false, 5060), 20, OPTIONS)?;
            send_udp(DENIED_V6.into(), sbc(true, 5060), 10, OPTIONS)?;
            send_udp(ALLOWED_V4.into(), sbc(false, 5060), 10, OPTIONS)?;
            send_udp(UNKNOWN_V6.into(), sbc(true, 5070), 2, SCANNER)?;
            send_udp(UNKNOWN_V4.into(), sbc(false, 5070), 1, INVITE_DENIED)?;
            send_udp(UNKNOWN_V4.into(), sbc(false, 5070), 1, INVITE_ALLOWED)
        })
        .unwrap()
        .unwrap();
    lab.sbc
        .run(|| {
            let socket = UdpSocket::bind((SBC_V4, 5070))?;
            socket.send_to(REGISTERED, SocketAddr::new(IpAddr::V4(UNKNOWN_V4), 5064))
        })
        .unwrap()
        .unwrap();
}
