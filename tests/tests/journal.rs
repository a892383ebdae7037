//! The journal of changes: `sipguard history` shows every change made through the CLI with
//! who made it and what it wrote; `sipguard undo` puts the kernel's tables back byte for
//! byte, refuses when a later change conflicts, and a controller killed in the middle of a
//! change leaves a journal with no half entry and every write it made.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use sipguard::{
    journal::raw::{RawEntry, RawMap},
    state::Target,
};
use sipguard_common::abi::map_name;
use sipguard_tests::{
    lab::{Lab, SBC_IF},
    pins::TempPinRoot,
    sipguard_bin,
};

/// A second policy: other lists, classes and ports than the example.
const POLICY_B: &str = r#"
mode = "monitor"
[trunk]
udp = [5060, 5080]
[access]
udp = [5070]
class = "phones"
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24", "2001:db8:1::/48", "203.0.113.0/24"]
class = "carrier"
[[deny]]
cidrs = ["198.18.66.0/24"]
[classes]
carrier = { rate = 500, burst = 900 }
phones = { rate = 5, burst = 10 }
[auth_failures]
threshold = 4
"#;

struct Cli {
    pins: PathBuf,
    netns: String,
    journal: tempfile::TempDir,
}

impl Cli {
    fn new(lab: &Lab, pins: &TempPinRoot) -> Cli {
        Cli {
            pins: pins.path().to_path_buf(),
            netns: lab.sbc.name().to_string(),
            journal: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(&self.pins)
            .args(["--netns", &self.netns])
            .arg("--journal-dir")
            .arg(self.journal.path())
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sipguard")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "sipguard {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn target(&self) -> Target {
        Target::new(SBC_IF, Some(&self.netns), &self.pins).expect("valid names")
    }

    fn history(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["history", "--iface", SBC_IF, "--json"])).unwrap()
    }

    fn journal_file(&self) -> PathBuf {
        let found = walk(self.journal.path())
            .into_iter()
            .find(|path| path.ends_with("journal.jsonl"));
        found.expect("a journal file")
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Every entry of every table, by table name.
type Tables = BTreeMap<String, Vec<RawEntry>>;

/// Every table the controller writes, entry by entry, as the kernel holds them.
fn controller_tables(target: &Target) -> Tables {
    let mut names = vec![
        map_name::META,
        map_name::ACTIVE,
        map_name::POLICY,
        map_name::PREFILTER,
        map_name::BANS,
        map_name::AUTH,
        map_name::VERIFIED,
    ];
    for pair in [
        map_name::ALLOW4,
        map_name::ALLOW6,
        map_name::ALLOW_HOSTS4,
        map_name::ALLOW_HOSTS6,
        map_name::DENY4,
        map_name::DENY6,
        map_name::SIGNATURES,
        map_name::DESTINATIONS,
    ] {
        names.extend(pair);
    }
    names
        .into_iter()
        .map(|name| {
            let mut map = RawMap::open(name, &target.map_pin(name)).unwrap();
            let mut entries = map.entries().unwrap();
            entries.sort();
            (name.to_string(), entries)
        })
        .collect()
}

/// Names the tables that differ, and how many entries in each.
fn differences(a: &Tables, b: &Tables) -> Vec<String> {
    a.iter()
        .filter(|(name, entries)| b.get(*name) != Some(entries))
        .map(|(name, entries)| {
            let other = &b[name];
            let changed = entries
                .iter()
                .filter(|entry| !other.contains(entry))
                .count()
                + other
                    .iter()
                    .filter(|entry| !entries.contains(entry))
                    .count();
            // Where the values of a key in both differ, for the failure message.
            let offsets: Vec<usize> = entries
                .iter()
                .filter_map(|(key, value)| {
                    let (_, theirs) = other.iter().find(|(k, _)| k == key)?;
                    value.iter().zip(theirs).position(|(x, y)| x != y)
                })
                .collect();
            format!("{name}: {changed} entries differ (first differing bytes at {offsets:?})")
        })
        .collect()
}

fn attach(cli: &Cli, dir: &Path) {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, sipguard::policy::EXAMPLE_POLICY).unwrap();
    cli.ok(&[
        "attach",
        "--iface",
        SBC_IF,
        "--policy",
        policy.to_str().unwrap(),
    ]);
}

#[test]
fn undo_since_restores_every_table_byte_for_byte_and_history_names_each_change() {
    let lab = Lab::new("journal").unwrap();
    let pins = TempPinRoot::new("journal-undo");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&lab, &pins);
    attach(&cli, dir.path());
    let before = controller_tables(&cli.target());
    let since = sipguard::time::now_unix();
    let policy_b = dir.path().join("b.toml");
    std::fs::write(&policy_b, POLICY_B).unwrap();

    let changes: Vec<(&str, Vec<&str>)> = vec![
        (
            "allow add",
            vec![
                "allow",
                "add",
                "--class",
                "carrier",
                "198.51.100.0/24",
                "198.51.101.7",
            ],
        ),
        (
            "deny add",
            vec!["deny", "add", "192.0.2.0/25", "2001:db8:bad::/48"],
        ),
        (
            "bans add",
            vec!["bans", "add", "--ttl", "2h", "198.18.9.9", "2001:db8:9::1"],
        ),
        ("strike", vec!["strike", "198.18.7.7", "--count", "3"]),
        (
            "limits set",
            vec!["limits", "set", "phones", "--rate", "7", "--burst", "21"],
        ),
        ("mode", vec!["mode", "monitor"]),
        ("lockdown", vec!["lockdown", "on"]),
        ("apply", vec!["apply", policy_b.to_str().unwrap()]),
        ("allow del", vec!["allow", "del", "198.51.100.0/24"]),
        ("bans del", vec!["bans", "del", "198.18.9.9"]),
        ("strike", vec!["strike", "198.18.7.8", "--count", "4"]),
        ("bans clear", vec!["bans", "clear"]),
    ];
    for (_, args) in &changes {
        let mut args = args.clone();
        args.extend(["--iface", SBC_IF]);
        cli.ok(&args);
    }
    let changed = controller_tables(&cli.target());
    assert!(
        !differences(&before, &changed).is_empty(),
        "the changes changed nothing"
    );

    let history = cli.history();
    let entries = history["changes"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = changes.iter().map(|(action, _)| *action).collect();
    assert_eq!(actions, expected);
    for (entry, id) in entries.iter().zip(1..) {
        assert_eq!(entry["id"], id);
        assert_eq!(entry["uid"], 0);
        assert_eq!(entry["user"], "root");
        assert_eq!(entry["outcome"], "done");
        assert!(
            entry["command"]
                .as_str()
                .unwrap()
                .contains(entry["action"].as_str().unwrap().split(' ').next().unwrap())
        );
        assert!(!entry["writes"].as_array().unwrap().is_empty(), "{entry}");
    }
    // The exact before and after: the allow entry's key and value, the ban's reason.
    let described: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            e["described"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
        })
        .collect();
    for needle in [
        "198.51.100.0/24: added (runtime, class",
        "198.51.101.7/32: added (runtime",
        "denylist (generation 1) 192.0.2.0/25: added (runtime)",
        "198.18.9.9: banned (manual)",
        "198.18.7.7: auth failures 0 -> 3",
        "prefilter chunk",
        "198.18.7.8: banned (auth_failures)",
        "mode enforce -> monitor",
        "running generation 1 -> 0",
        "198.18.9.9: ban lifted (manual)",
    ] {
        assert!(
            described.iter().any(|d| d.contains(needle)),
            "no '{needle}' in {described:#?}"
        );
    }
    // The text view shows the same, one line per change.
    let text = cli.ok(&["history", "--iface", SBC_IF]);
    assert!(
        text.contains("#12") && text.contains("bans clear"),
        "{text}"
    );

    let undone = cli.ok(&[
        "undo",
        "--iface",
        SBC_IF,
        "--since",
        &sipguard::time::format_time(since),
    ]);
    assert!(undone.contains("#12, #11, #10"), "{undone}");
    let after = controller_tables(&cli.target());
    assert_eq!(
        differences(&before, &after),
        Vec::<String>::new(),
        "undo left differences"
    );
    assert_eq!(before, after);

    // The undo is journaled and can be undone in turn: back to the changed state.
    let history = cli.history();
    let last = history["changes"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "undo");
    assert_eq!(last["undoes"].as_array().unwrap().len(), changes.len());
    cli.ok(&["undo", "--iface", SBC_IF, &last["id"].to_string()]);
    assert_eq!(
        differences(&changed, &controller_tables(&cli.target())),
        Vec::<String>::new()
    );
    cli.ok(&["detach", "--iface", SBC_IF]);
}

#[test]
fn undo_refuses_what_a_later_change_touched_and_changes_nothing() {
    let lab = Lab::new("jconflict").unwrap();
    let pins = TempPinRoot::new("journal-conflict");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&lab, &pins);
    attach(&cli, dir.path());
    let policy_b = dir.path().join("b.toml");
    std::fs::write(&policy_b, POLICY_B).unwrap();
    // #1, #2: the same class twice; #3 mode; #4 lockdown: other bytes of the same policy.
    cli.ok(&["limits", "set", "--iface", SBC_IF, "phones", "--rate", "3"]);
    cli.ok(&["limits", "set", "--iface", SBC_IF, "phones", "--rate", "4"]);
    cli.ok(&["mode", "--iface", SBC_IF, "monitor"]);
    cli.ok(&["lockdown", "--iface", SBC_IF, "on"]);
    let tables = controller_tables(&cli.target());

    let refused = cli.run(&["undo", "--iface", SBC_IF, "1"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("cannot undo #1") && message.contains("#2 (limits set)"),
        "{message}"
    );
    assert_eq!(
        tables,
        controller_tables(&cli.target()),
        "a refused undo changed something"
    );

    // Undoing the mode alone is fine: the lockdown wrote other bytes.
    cli.ok(&["undo", "--iface", SBC_IF, "3"]);
    assert_eq!(cli.ok(&["mode", "--iface", SBC_IF]).trim(), "enforce");
    assert_eq!(
        cli.ok(&["lockdown", "--iface", SBC_IF]).trim(),
        "allowlisted+verified"
    );

    // An allow entry made before an apply: the apply replaced the generation it lives in.
    cli.ok(&["allow", "add", "--iface", SBC_IF, "198.51.100.0/24"]);
    let allow_id = cli.history()["changes"].as_array().unwrap().last().unwrap()["id"].clone();
    cli.ok(&["apply", "--iface", SBC_IF, policy_b.to_str().unwrap()]);
    let apply_id = cli.history()["changes"].as_array().unwrap().last().unwrap()["id"].clone();
    let tables = controller_tables(&cli.target());
    let refused = cli.run(&["undo", "--iface", SBC_IF, &allow_id.to_string()]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        message.contains(&format!("#{apply_id} (apply)")),
        "{message}"
    );
    assert_eq!(tables, controller_tables(&cli.target()));
    // An entry added after the apply: undoing the apply would lose it.
    cli.ok(&["deny", "add", "--iface", SBC_IF, "192.0.2.0/24"]);
    let refused = cli.run(&["undo", "--iface", SBC_IF, &apply_id.to_string()]);
    assert!(
        !refused.status.success(),
        "undoing the apply would drop a later deny entry"
    );
    // Undo an unknown id.
    let unknown = cli.run(&["undo", "--iface", SBC_IF, "999"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no journal entry #999"));
    cli.ok(&["detach", "--iface", SBC_IF]);
}

#[test]
fn a_controller_killed_mid_change_leaves_whole_lines_and_every_write_it_made() {
    let lab = Lab::new("jkill").unwrap();
    let pins = TempPinRoot::new("journal-kill");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&lab, &pins);
    attach(&cli, dir.path());
    cli.ok(&["allow", "add", "--iface", SBC_IF, "198.51.100.1"]);
    let before = controller_tables(&cli.target());
    // 20,000 host entries: long enough to be killed in the middle.
    let hosts: Vec<String> = (0..20_000u32)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect();
    let mut args = vec!["allow", "add", "--iface", SBC_IF];
    args.extend(hosts.iter().map(String::as_str));
    let mut child = cli
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pending = cli.journal_file().with_file_name("pending.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines =
            std::fs::read(&pending).map_or(0, |text| text.iter().filter(|b| **b == b'\n').count());
        if lines > 2_000 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the change finished before the kill: make it longer"
    );

    // No command ran since: the kernel holds what the dead one wrote.
    let written = controller_tables(&cli.target());
    let host_entries = |tables: &Tables| {
        map_name::ALLOW_HOSTS4
            .iter()
            .map(|name| tables[*name].len())
            .sum::<usize>()
    };
    let made = host_entries(&written) - host_entries(&before);
    assert!(made > 0 && made < hosts.len(), "{made} entries made");

    // The next command journals the interrupted change first.
    cli.ok(&["limits", "set", "--iface", SBC_IF, "phones", "--rate", "9"]);
    assert!(!pending.exists());
    let text = std::fs::read_to_string(cli.journal_file()).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is a whole entry");
    }
    let history = cli.history();
    let changes = history["changes"].as_array().unwrap();
    let interrupted = changes
        .iter()
        .find(|e| e["outcome"] == "interrupted")
        .expect("journaled");
    let journaled_hosts = interrupted["writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|write| {
            map_name::ALLOW_HOSTS4
                .iter()
                .any(|name| write["map"] == *name)
        })
        .count();
    assert_eq!(
        journaled_hosts, made,
        "the journal lists exactly the entries the kernel got"
    );
    // It can be undone like any other change (after the later limits change).
    let later = changes.last().unwrap()["id"].to_string();
    cli.ok(&["undo", "--iface", SBC_IF, &later]);
    cli.ok(&["undo", "--iface", SBC_IF, &interrupted["id"].to_string()]);
    assert_eq!(
        differences(&before, &controller_tables(&cli.target())),
        Vec::<String>::new()
    );
    cli.ok(&["detach", "--iface", SBC_IF]);
}

#[test]
fn concurrent_commands_each_get_one_entry_and_undo_since_reverts_them_all() {
    let lab = Lab::new("jconc").unwrap();
    let pins = TempPinRoot::new("journal-concurrent");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&lab, &pins);
    attach(&cli, dir.path());
    let before = controller_tables(&cli.target());
    let since = sipguard::time::now_unix();
    let children: Vec<(String, std::process::Child)> = (0..24u32)
        .map(|i| {
            let (args, what): (Vec<String>, String) = match i % 3 {
                0 => (
                    vec!["allow".into(), "add".into(), format!("198.51.{i}.0/24")],
                    format!("198.51.{i}.0/24"),
                ),
                1 => (
                    vec!["deny".into(), "add".into(), format!("192.0.{i}.0/24")],
                    format!("192.0.{i}.0/24"),
                ),
                _ => (
                    vec!["bans".into(), "add".into(), format!("198.18.50.{i}")],
                    format!("198.18.50.{i}"),
                ),
            };
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--iface", SBC_IF]);
            let child = cli
                .command(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (what, child)
        })
        .collect();
    let mut subjects = Vec::new();
    for (what, child) in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        subjects.push(what);
    }
    let history = cli.history();
    let changes = history["changes"].as_array().unwrap();
    let mut ids: Vec<u64> = changes.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=24).collect::<Vec<u64>>(),
        "one entry each, no id twice"
    );
    for what in &subjects {
        let journaled = changes.iter().any(|e| {
            e["described"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d.as_str().unwrap().contains(&format!("{what}:")))
        });
        assert!(journaled, "{what} is not in the journal");
    }
    cli.ok(&[
        "undo",
        "--iface",
        SBC_IF,
        "--since",
        &sipguard::time::format_time(since),
    ]);
    assert_eq!(
        differences(&before, &controller_tables(&cli.target())),
        Vec::<String>::new()
    );
    cli.ok(&["detach", "--iface", SBC_IF]);
}
