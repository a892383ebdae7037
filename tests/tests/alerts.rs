//! The shipped Prometheus alert rules: valid for promtool, and unit-tested with series that fire
//! and series that do not fire each alert.

use std::{path::PathBuf, process::Command};

fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sipguard/alerts")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(alerts_dir())
        .output()
        .expect("promtool (scripts/setup installs the prometheus package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let checked = promtool(&["check", "rules", "sipguard.rules.yml"]);
    assert!(checked.contains("SUCCESS: 15 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "sipguard.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let rules = std::fs::read_to_string(alerts_dir().join("sipguard.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(alerts_dir().join("sipguard.rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 13);
    for alert in alerts {
        // Each test block lists its alert, then `exp_alerts:` (firing, with labels) and either an
        // explicit `exp_alerts: []` or an input series of a second interface that must not fire.
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(alert))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_labels")),
            "{alert} never fires in the tests"
        );
        let quiet_case = cases.iter().any(|c| c.contains("exp_alerts: []"));
        let quiet_series = tests.contains("interface=\"eth1\"");
        assert!(
            quiet_case || quiet_series,
            "{alert} has no case that must stay quiet"
        );
    }
}
