//! The benchmark harness in its smoke mode (`sipguard-bench --quick`), so that it does not rot:
//! the report must be complete and well-formed, and nothing may be left behind. Timings and
//! ratios are never asserted; the machine is shared and noisy.

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;
use sipguard_tests::require_root;

fn num(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {value}"))
}

/// A summary (median, min, max, rounds) with a positive, finite median.
fn positive_summary(summary: &Value, rounds: usize, what: &str) {
    let median = num(&summary["median"], what);
    assert!(
        median.is_finite() && median > 0.0,
        "{what}: median {median}"
    );
    assert!(num(&summary["min"], what) <= median, "{what}: min > median");
    assert!(num(&summary["max"], what) >= median, "{what}: max < median");
    let samples = summary["rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no rounds"));
    assert_eq!(samples.len(), rounds, "{what}: one sample per round");
}

fn strings<'a>(items: &'a [Value], key: &str) -> BTreeSet<&'a str> {
    items.iter().filter_map(|i| i[key].as_str()).collect()
}

#[test]
fn quick_bench_writes_a_complete_report_and_cleans_up() {
    require_root();
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sipguard-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .spawn()
        .expect("run sipguard-bench");
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "sipguard-bench --quick failed");

    // Nothing of the run is left: namespaces and pin directories carry its pid.
    let tag = format!("-{pid}-");
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !netns.lines().any(|l| l.contains(&tag)),
        "namespaces left behind: {netns}"
    );
    let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf/sipguard-test")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(&tag))
        .collect();
    assert!(pins.is_empty(), "pins left behind: {pins:?}");
    // The fleet part's daemons (fleet `bench-<pid>...`) and redis-server (its directory
    // `sipguard-bench-fleet-<pid>-...`) are gone with it.
    for pattern in [
        format!("--fleet-name bench-{pid}"),
        format!("sipguard-bench-fleet-{pid}-"),
    ] {
        let left = Command::new("pgrep")
            .args(["-a", "-f", "--", &pattern])
            .output()
            .unwrap();
        assert!(
            left.stdout.is_empty(),
            "processes left behind: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }

    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for heading in [
        "## Targets to chase",
        "## Per-packet cost",
        "## Throughput through veth",
        "## Fleet: ban propagation between two hosts",
        "## Programs",
    ] {
        assert!(markdown.contains(heading), "report.md lacks {heading}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .expect("report.json is JSON");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["mode"], "quick");
    let rounds = report["settings"]["rounds"].as_u64().unwrap() as usize;
    assert!(rounds >= 2, "several interleaved rounds");
    assert!(!report["prefix_mix"].as_str().unwrap().is_empty());

    // Every scenario under every allowlist size, the full maps and the diagnostic variant.
    let scenarios = report["scenarios"].as_array().unwrap();
    let names = strings(scenarios, "name");
    for expected in [
        "allowlisted_under_budget",
        "allowlisted_over_budget",
        "unknown_trunk_dropped",
        "unknown_access_admitted",
        "denylisted",
        "banned",
        "non_sip_passed",
        "ipv6_allowlisted",
        "vlan_allowlisted",
        "malformed",
        "register_access",
        "invite_national_full",
        "scanner_options",
    ] {
        assert!(names.contains(expected), "scenario {expected} missing");
    }
    let configs = report["configs"].as_array().unwrap();
    let plain: BTreeSet<u64> = configs
        .iter()
        .filter(|c| c["variant"] == "plain")
        .map(|c| c["prefixes"].as_u64().unwrap())
        .collect();
    assert_eq!(plain, BTreeSet::from([100, 1_000, 10_000, 100_000]));
    let full = configs
        .iter()
        .find(|c| c["variant"] == "maps_full")
        .expect("a configuration with the per-source maps full");
    assert!(full["sources_entries"].as_u64().unwrap() > 60_000);
    assert!(full["peers_entries"].as_u64().unwrap() > 0);
    let stage1 = configs
        .iter()
        .find(|c| c["variant"] == "no_sip_rules")
        .expect("a configuration without the SIP rules (stage 1 alone)");
    assert_eq!(stage1["sip_rules"], false);
    // The SIP-stage diagnostics measure only the packets that reach the SIP stages.
    let sip_only = |config: &Value| {
        config["variant"] == "method_stage_only" || config["variant"] == "no_destination_stage"
    };
    assert_eq!(configs.iter().filter(|c| sip_only(c)).count(), 2);

    let cells = report["per_packet"].as_array().unwrap();
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        let xdp_filter = !scenario["xdp_filter"].is_null();
        let reaches_sip = !scenario["sip_path"].is_null();
        for config in configs {
            if sip_only(config) && !reaches_sip {
                continue;
            }
            let config_name = config["name"].as_str().unwrap();
            let what = format!("{name} @{config_name}");
            let cell = cells
                .iter()
                .find(|c| c["scenario"] == name && c["config"] == config_name)
                .unwrap_or_else(|| panic!("{what}: no measurement"));
            positive_summary(&cell["ns"], rounds, &what);
            assert_eq!(
                cell["verdict_ok"], true,
                "{what}: runs with another verdict than the scenario's: {cell}"
            );
            // The entry-only diagnostic passes what the judge would decide: not checked.
            let checked = config["variant"] != "entry_only";
            assert_eq!(
                cell["runs_checked"].as_u64().unwrap() > 0,
                checked,
                "{what}"
            );
            for ratio in ["vs_bench_drop", "vs_bench_pass", "vs_bench_parse"] {
                positive_summary(&cell[ratio], rounds, &format!("{what} {ratio}"));
            }
            // xdp-filter holds 10,000 addresses per family: no 100k counterpart.
            if xdp_filter && config["prefixes"].as_u64().unwrap() <= 10_000 {
                positive_summary(
                    &cell["vs_xdp_filter"]["ratio"],
                    rounds,
                    &format!("{what} vs xdp-filter"),
                );
            }
        }
        let baselines = report["baselines"].as_array().unwrap();
        for baseline in ["bench_drop", "bench_pass", "bench_parse"] {
            let cell = baselines
                .iter()
                .find(|b| b["baseline"] == baseline && b["scenario"] == name)
                .unwrap_or_else(|| panic!("{baseline} on {name} missing"));
            positive_summary(&cell["ns"], rounds, &format!("{baseline} {name}"));
        }
        let xf: Vec<&Value> = baselines
            .iter()
            .filter(|b| b["baseline"] == "xdp_filter" && b["scenario"] == name)
            .collect();
        assert_eq!(!xf.is_empty(), xdp_filter, "xdp-filter on {name}");
        for cell in xf {
            positive_summary(&cell["ns"], rounds, &format!("xdp-filter {name}"));
            assert_eq!(cell["action_ok"], true, "xdp-filter on {name}: {cell}");
        }
    }
    let growth = report["growth"].as_array().unwrap();
    assert_eq!(growth.len(), scenarios.len());
    for row in growth {
        positive_summary(&row["ratio"], rounds, "growth");
    }

    // Every scenario through stage 1 alone and with the SIP rules; the SIP scenarios reach the
    // SIP stage (their paths are checked on every run, in verdict_ok above).
    let sip_stages = report["sip_stages"].as_array().unwrap();
    assert_eq!(sip_stages.len(), scenarios.len());
    for row in sip_stages {
        let name = row["scenario"].as_str().unwrap();
        for key in ["stage1_alone", "with_sip_rules", "ratio"] {
            positive_summary(&row[key], rounds, &format!("sip_stages {name} {key}"));
        }
        if !row["sip_path"].is_null() {
            assert_eq!(row["reaches_sip_stage"], true, "{name}: {row}");
        }
    }
    assert!(markdown.contains("### The SIP stages"));

    // Evidence capture: off, on but matching nothing, copying (every copy checked in the run).
    let capture = report["capture"].as_array().unwrap();
    assert_eq!(capture.len(), 3);
    for row in capture {
        let name = row["frame"].as_str().unwrap();
        for key in [
            "bare_drop",
            "off",
            "armed",
            "copying",
            "armed_ratio",
            "copying_ratio",
        ] {
            positive_summary(&row[key], rounds, &format!("capture {name} {key}"));
        }
    }
    assert!(markdown.contains("Evidence capture"));

    // Instruction counts and JIT sizes of every program measured.
    let programs = report["programs"].as_array().unwrap();
    let program_names = strings(programs, "program");
    for expected in [
        "sipguard",
        "sipguard_judge",
        "sipguard_sip",
        "sipguard_report",
        "bench_drop",
        "bench_pass",
        "bench_parse",
        "bench_gen",
    ] {
        assert!(
            program_names.contains(expected),
            "program {expected} missing"
        );
    }
    assert!(program_names.iter().any(|n| n.starts_with("xdpfilt_")));
    for program in programs {
        for key in ["xlated_insns", "verified_insns", "jited_bytes"] {
            assert!(
                program[key].as_u64().unwrap() > 0,
                "{key} of {}",
                program["program"]
            );
        }
    }

    // Throughput: every subject, packets counted, rates and ratios.
    let throughput = &report["throughput"];
    let tp_rounds = report["settings"]["throughput_rounds"].as_u64().unwrap() as usize;
    let results = throughput["results"].as_array().unwrap();
    for (subject, traffic) in [
        ("sipguard", "spoofed_flood"),
        ("sipguard", "allowed"),
        ("bench_drop", "spoofed_flood"),
        ("bench_pass", "allowed"),
        ("xdp_filter", "spoofed_flood"),
        ("xdp_filter", "allowed"),
        ("nft_netdev_ingress", "spoofed_flood"),
        ("nft_netdev_ingress", "allowed"),
        ("nft_inet_prerouting", "spoofed_flood"),
        ("nft_inet_prerouting", "allowed"),
    ] {
        let cell = results
            .iter()
            .find(|c| c["subject"] == subject && c["traffic"] == traffic)
            .unwrap_or_else(|| panic!("throughput {subject} {traffic} missing"));
        let what = format!("throughput {subject} {traffic}");
        assert!(cell["generated"].as_u64().unwrap() > 0, "{what}: generated");
        assert!(cell["counted"].as_u64().unwrap() > 0, "{what}: counted");
        positive_summary(&cell["pps"], tp_rounds, &what);
        positive_summary(&cell["wall_pps"], tp_rounds, &what);
    }
    let ratios = throughput["ratios"].as_array().unwrap();
    for against in [
        "bench_drop",
        "xdp_filter",
        "nft_netdev_ingress",
        "nft_inet_prerouting",
    ] {
        let row = ratios
            .iter()
            .find(|r| r["traffic"] == "spoofed_flood" && r["against"] == against)
            .unwrap_or_else(|| panic!("flood ratio against {against} missing"));
        positive_summary(&row["ratio"], tp_rounds, against);
    }

    // Fleet: every single ban and every burst went from A to B, each beside its baseline.
    let fleet = &report["fleet"];
    let samples = fleet["samples"].as_u64().unwrap() as usize;
    assert!(samples >= 2, "several single bans");
    for key in ["latency_ms", "to_stream_ms", "write_ms", "baseline_ms"] {
        let measured = fleet[key]["samples"].as_array().unwrap();
        assert_eq!(measured.len(), samples, "fleet {key}");
        assert!(
            measured.iter().all(|v| num(v, key) > 0.0),
            "fleet {key}: {measured:?}"
        );
    }
    positive_summary(&fleet["ratio"], samples, "fleet latency / baseline");
    let burst = &fleet["burst"];
    assert_eq!(burst["complete"], true, "every burst reached B: {burst}");
    let burst_rounds = burst["rounds"].as_u64().unwrap() as usize;
    assert_eq!(
        burst["arrived"].as_u64().unwrap() as usize,
        burst_rounds * burst["bans"].as_u64().unwrap() as usize
    );
    for key in [
        "bans_per_second",
        "baseline_sequential_per_second",
        "baseline_pipelined_per_second",
        "ratio_sequential",
        "small_empty_per_second",
        "small_loaded_per_second",
        "loaded_ratio",
    ] {
        positive_summary(&burst[key], burst_rounds, &format!("fleet burst {key}"));
    }

    // The targets, each with where we stand (never asserted to be met).
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 11);
    for target in targets {
        assert!(target["value"].is_number(), "target not measured: {target}");
        assert!(target["met"].is_boolean());
        assert!(!target["status"].as_str().unwrap().is_empty());
    }
}
