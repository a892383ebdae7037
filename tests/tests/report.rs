//! `sipguard report` on real traffic through veth: the window's counts come from the
//! daemon's counter reading at its start (traffic before it is left out), sources from its
//! event log, bans from the table and changes from the journal.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use sipguard_tests::{
    lab::{DENIED_V4, Lab, SBC_IF, UNKNOWN_V4, UNKNOWN_V6, wait_until},
    pins::TempPinRoot,
    sipguard_bin,
};

const OPTIONS: &[u8] =
    b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
const SCANNER: &[u8] = b"OPTIONS sip:100@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nFrom: <sip:100@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n";

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sipguard(pins: &Path, netns: &str, journal: &Path, args: &[&str]) -> Output {
    Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(pins)
        .args(["--netns", netns, "--journal-dir"])
        .arg(journal)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_report_covers_its_window_only_and_names_sources_bans_and_changes() {
    let lab = Lab::new("report").unwrap();
    let pins = TempPinRoot::new("report");
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, sipguard::policy::EXAMPLE_POLICY).unwrap();
    let events = dir.path().join("events.jsonl");
    let cli = |args: &[&str]| {
        let output = sipguard(pins.path(), lab.sbc.name(), &journal, args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    // Before the window: 50 drops of an unknown source on the trunk.
    lab.send_from(UNKNOWN_V4.into(), 5060, 50, OPTIONS);

    let _daemon = Running(
        Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(pins.path())
            .arg("--journal-dir")
            .arg(&journal)
            .args(["--netns", lab.sbc.name(), "run", "--iface", SBC_IF])
            .args(["--listen", "127.0.0.1:0", "--events"])
            .arg(&events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The daemon's first counter reading starts the window.
    let readings = walk_find(&journal, "counters.jsonl");
    let first_reading = || {
        std::fs::read_to_string(readings())
            .ok()
            .and_then(|text| text.lines().next().map(str::to_string))
    };
    assert!(
        wait_until(Duration::from_secs(20), || first_reading().is_some()),
        "no counter reading"
    );
    let reading: serde_json::Value = serde_json::from_str(&first_reading().unwrap()).unwrap();
    let since = reading["unix"].as_u64().unwrap();

    // In the window: 30 more of the unknown source, 20 of a denylisted one, a scanner banned,
    // and a change.
    lab.send_from(UNKNOWN_V4.into(), 5060, 30, OPTIONS);
    lab.send_from(DENIED_V4.into(), 5060, 20, OPTIONS);
    lab.send_from(UNKNOWN_V6.into(), 5070, 3, SCANNER);
    cli(&["allow", "add", "--iface", SBC_IF, "198.51.100.0/24"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&events).is_ok_and(|text| text.contains("\"scanner\""))
        }),
        "the daemon logged the events"
    );

    let since_text = sipguard::time::format_time(since);
    let events_arg = events.to_str().unwrap();
    let report_of = |since: &str, extra: &[&str]| {
        let mut args = vec![
            "report", "--iface", SBC_IF, "--since", since, "--events", events_arg,
        ];
        args.extend(extra);
        cli(&args)
    };
    let json = report_of(&since_text, &["--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        report["counters_from"]
            .as_str()
            .unwrap()
            .starts_with("snapshot"),
        "{report:#}"
    );
    let packets = |zone: &str, reason: &str| -> u64 {
        report["counters"]["packets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row[0] == zone && row[1] == reason && row[2] == "dropped")
            .map(|row| row[3].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        packets("trunk", "not_allowlisted"),
        30,
        "only the window's drops: {report:#}"
    );
    assert_eq!(packets("trunk", "denylisted"), 20);
    assert!(packets("access", "scanner") >= 1);

    let top = report["top_sources"].as_array().unwrap();
    let drops_of = |source: &str| {
        top.iter()
            .find(|row| row["source"] == source)
            .map(|row| row["drops"].as_u64().unwrap())
    };
    let denied = drops_of(&DENIED_V4.to_string()).expect("the denylisted source is listed");
    assert!((1..=20).contains(&denied), "{denied}");
    // The unknown source spent its event budget before the window: its drops in it may all be
    // suppressed (counted with its next event), so it need not be listed.

    let bans = report["bans"].as_array().unwrap();
    assert!(
        bans.iter().any(|ban| ban["reason"] == "scanner"
            && ban["source"].as_str().unwrap().starts_with("2001:db8:2::")),
        "{bans:#?}"
    );
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["action"], "allow add");
    assert!(
        changes[0]["what"][0]
            .as_str()
            .unwrap()
            .contains("198.51.100.0/24: added (runtime)")
    );

    // The same as Markdown, for the ticket.
    let markdown = report_of(&since_text, &[]);
    for needle in [
        "# sipguard incident report: sbc0@",
        "| trunk | not_allowlisted | dropped | 30 |",
        "| trunk | denylisted | dropped | 20 |",
        "## Top sources",
        &format!("| {DENIED_V4} |"),
        "## Bans issued",
        "| scanner |",
        "## Changes made",
        "| allow add |",
    ] {
        assert!(markdown.contains(needle), "no '{needle}' in:\n{markdown}");
    }

    // A window older than every reading: the counts since attach, and said so.
    let old = report_of("2000-01-01T00:00:00Z", &["--json"]);
    let old: serde_json::Value = serde_json::from_str(&old).unwrap();
    assert_eq!(old["counters_from"], "since_attach");
    let all: u64 = old["counters"]["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row[0] == "trunk" && row[1] == "not_allowlisted")
        .map(|row| row[3].as_u64().unwrap())
        .sum();
    assert_eq!(all, 80);
    cli(&["detach", "--iface", SBC_IF]);
}

/// The path of the first file named `name` under `dir`, looked up each call.
fn walk_find(dir: &Path, name: &'static str) -> impl Fn() -> std::path::PathBuf {
    let dir = dir.to_path_buf();
    move || find(&dir, name).unwrap_or_default()
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|file| file == name) {
            return Some(path);
        }
    }
    None
}
