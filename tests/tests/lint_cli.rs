//! `sipguard check --lint` as operators run it: the warnings with file:line (also into list
//! files), the exit status with and without `--strict`, and plain `check` unchanged.

use std::{path::Path, process::Output};

use sipguard_tests::sipguard_bin;

/// Every lint fires once (the `new-sources-storm` one with `--phones 2000`).
const POLICY: &str = r#"mode = "enforce"
[trunk]
udp = [5060]
tcp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 10, burst = 100 }
[classes]
phones = { rate = 5, burst = 1 }
carrier = { rate = 100 }
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["10.0.0.0/8"]
files = ["carrier.txt"]
[[allow]]
name = "lab"
cidrs = ["192.0.2.0/24", "10.66.1.0/24"]
[[deny]]
name = "bad"
cidrs = ["10.66.0.0/16"]
"#;

const LIST: &str = "# the carrier's published ranges\n10.1.0.0/16\n";

const CLEAN: &str = r#"mode = "enforce"
[trunk]
udp = [5060]
tcp = [5060, 5061]
[[allow]]
cidrs = ["10.1.0.0/24"]
"#;

fn check(dir: &Path, file: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = std::process::Command::new(sipguard_bin())
        .arg("check")
        .args(args)
        .arg(dir.join(file))
        .output()
        .expect("run sipguard");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn check_lint_prints_every_warning_with_file_and_line_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("carrier.txt"), LIST).unwrap();
    std::fs::write(dir.path().join("clean.toml"), CLEAN).unwrap();
    let policy = dir.path().join("policy.toml").display().to_string();
    let list = dir.path().join("carrier.txt").display().to_string();

    // Plain `check`: valid, no warnings.
    let (code, stdout, stderr) = check(dir.path(), "policy.toml", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(": valid;"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let (code, stdout, stderr) = check(dir.path(), "policy.toml", &["--lint", "--phones", "2000"]);
    assert_eq!(code, Some(0), "warnings alone do not fail: {stderr}");
    assert!(stdout.contains(": valid;"), "{stdout}");
    let expected = [
        format!("{policy}:15: warning[broad-allow]: allow 10.0.0.0/8 (carrier)"),
        format!(
            "{list}:2: warning[redundant-allow]: allow 10.1.0.0/16 (carrier) is inside allow 10.0.0.0/8 (carrier, {policy}:15)"
        ),
        format!(
            "{policy}:19: warning[shadowed-allow]: allow 10.66.1.0/24 (lab) is inside deny 10.66.0.0/16 (bad, {policy}:22)"
        ),
        format!(
            "{policy}:22: warning[deny-inside-allow]: deny 10.66.0.0/16 (bad) is inside allow 10.0.0.0/8 (carrier, {policy}:15): the deny entry wins"
        ),
        format!(
            "{policy}:19: warning[documentation-range]: allow 192.0.2.0/24 (lab) is in the documentation range (RFC 5737) 192.0.2.0/24"
        ),
        format!("{policy}:2: warning[sip-port-in-no-zone]: TCP 5061 (SIP) is in no zone"),
        format!(
            "{policy}:10: warning[register-burst]: class phones (the access class) has burst 1"
        ),
        format!(
            "{policy}:8: warning[new-sources-storm]: new_sources (rate 10/s, burst 100) admits 2000 phones re-registering at once after an outage in 190 s"
        ),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    for want in &expected {
        assert!(
            lines.iter().any(|line| line.starts_with(want.as_str())),
            "missing {want}\nin:\n{stderr}"
        );
    }
    assert_eq!(
        lines.last().copied(),
        Some(format!("{policy}: 8 lint warning(s)").as_str()),
        "{stderr}"
    );

    // The default --phones (1000): 900 new sources at 10/s still take 90 s.
    let (_, _, stderr) = check(dir.path(), "policy.toml", &["--lint"]);
    assert!(stderr.contains("admits 1000 phones"), "{stderr}");
    // Few phones: that warning goes.
    let (_, _, stderr) = check(dir.path(), "policy.toml", &["--lint", "--phones", "100"]);
    assert!(!stderr.contains("new-sources-storm"), "{stderr}");
    assert!(stderr.contains(": 7 lint warning(s)"), "{stderr}");

    for strict in ["--strict", "--deny-warnings"] {
        let (code, _, stderr) = check(dir.path(), "policy.toml", &["--lint", strict]);
        assert_eq!(code, Some(4), "{strict} fails on warnings: {stderr}");
        let (code, _, stderr) = check(dir.path(), "clean.toml", &["--lint", strict]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("clean.toml: 0 lint warning(s)"), "{stderr}");
    }
    // --strict means nothing without --lint: a usage error.
    let (code, _, _) = check(dir.path(), "clean.toml", &["--strict"]);
    assert_eq!(code, Some(2));
    // An invalid policy is still exit 3, lint or not.
    std::fs::write(dir.path().join("bad.toml"), "[trunk]\nudp = [0]\n").unwrap();
    let (code, _, stderr) = check(dir.path(), "bad.toml", &["--lint", "--strict"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
}

#[test]
fn the_example_policy_lints_with_its_lab_ranges_only() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::process::Command::new(sipguard_bin())
        .arg("example")
        .output()
        .unwrap();
    std::fs::write(dir.path().join("example.toml"), &example.stdout).unwrap();
    let (code, _, stderr) = check(dir.path(), "example.toml", &["--lint"]);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": warning["))
        .collect();
    assert_eq!(warnings.len(), 4, "{stderr}");
    assert!(
        warnings
            .iter()
            .all(|l| l.contains("warning[documentation-range]")),
        "{stderr}"
    );
}
