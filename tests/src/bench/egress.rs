//! What the egress program costs on what the SBC sends: `BPF_PROG_TEST_RUN` of the TC egress
//! entry with the feedback off and on in the policy, against `bench_tc_pass` (a classifier
//! that counts and passes: the floor of any TC program), same frames, interleaved rounds.
//!
//! "Costs nothing measurable with the feature off" means: off / floor stays within the rounds'
//! own spread. With the feature on, only answers of interest (1xx-3xx, 401, 403, 407 from an
//! access-zone port) reach the answer and feedback stages; the rest pays the parser.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use serde::Serialize;
use sipguard_tests::{frames::Packet, harness::TestFilter};

use super::stats::{Summary, round_order};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);

/// The zones of the lab; `feedback` is the `[auth_failures]`/`[verified]` part.
fn policy(feedback: &str) -> String {
    format!(
        "mode = \"enforce\"\n[trunk]\nudp = [5060]\n[access]\nudp = [5070]\nclass = \"phones\"\n\
         [classes]\nphones = {{ rate = 20, burst = 60 }}\n{feedback}"
    )
}

/// Off: `threshold = 0` and `enabled = false`. On: a threshold no bench reaches, so every 401
/// takes the whole failure path (and never the ban's).
const OFF: &str = "[auth_failures]\nthreshold = 0\n[verified]\nenabled = false\n";
const ON: &str = "[auth_failures]\nthreshold = 1000000000\ngrace = \"0s\"\n";

fn sip(status: &str, cseq: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 198.18.2.10:5062;branch=z9hG4bK-1\r\n\
         From: <sip:1001@sbc.lab>;tag=a\r\nTo: <sip:1001@sbc.lab>;tag=b\r\n\
         Call-ID: bench@lab\r\nCSeq: {cseq}\r\n\
         WWW-Authenticate: Digest realm=\"sbc.lab\", nonce=\"0123456789abcdef\"\r\n\
         Contact: <sip:1001@198.18.2.10:5062>;expires=300\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The frames: what an SBC sends most (media, answers to keepalives), and the answers the
/// feedback acts on.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "RTP (UDP 20000 -> 30000, 200 bytes)",
            Packet::udp4(SBC, PHONE, 20_000, 30_000, vec![0x80; 200]).build(),
        ),
        (
            "200 OK to OPTIONS (access port)",
            Packet::udp4(SBC, PHONE, 5070, 5062, sip("200 OK", "1 OPTIONS")).build(),
        ),
        (
            "401 to REGISTER (access port)",
            Packet::udp4(
                SBC,
                PHONE,
                5070,
                5062,
                sip("401 Unauthorized", "1 REGISTER"),
            )
            .build(),
        ),
        (
            "200 OK to REGISTER (access port)",
            Packet::udp4(SBC, PHONE, 5070, 5062, sip("200 OK", "2 REGISTER")).build(),
        ),
    ]
}

/// What the judge pays for verified sources: the same access-zone frames through the XDP program
/// with `[verified]` off and on (an unknown source then costs one more hash lookup, a miss; a
/// verified one is budgeted on its verified entry instead of `SG_SOURCES`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct JudgeRow {
    pub frame: &'static str,
    pub verdict_off: &'static str,
    pub verdict_on: &'static str,
    pub off: Summary,
    pub on: Summary,
    /// Per-round ratios on / off.
    pub ratio: Summary,
}

/// Budgets no run exhausts: every packet goes through its bucket.
fn judge_policy(verified: bool) -> String {
    format!(
        "mode = \"enforce\"\n[trunk]\nudp = [5060]\n[access]\nudp = [5070]\nclass = \"phones\"\n\
         new_sources = {{ rate = 1000000000, burst = 1000000000 }}\n\
         [classes]\nphones = {{ rate = 1000000000, burst = 1000000000 }}\n\
         [auth_failures]\nthreshold = 0\n[verified]\nenabled = {verified}\n"
    )
}

pub(crate) fn measure_judge(rounds: usize, repeat: u32) -> Result<Vec<JudgeRow>> {
    const UNKNOWN: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 50);
    let options_from = |src: Ipv4Addr| {
        Packet::udp4(
            src,
            SBC,
            5062,
            5070,
            b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n".to_vec(),
        )
        .build()
    };
    let mut off = TestFilter::new(&judge_policy(false));
    let mut on = TestFilter::new(&judge_policy(true));
    // The phone is verified by the SBC's 200 OK (in the configuration that verifies).
    let ok = Packet::udp4(SBC, PHONE, 5070, 5062, sip("200 OK", "2 REGISTER")).build();
    for filter in [&mut off, &mut on] {
        filter.run_egress(&ok, 1);
    }
    let frames = [
        (
            "OPTIONS from an unknown access-zone source",
            options_from(UNKNOWN),
            "access_admitted",
            "access_admitted",
        ),
        (
            "OPTIONS from the verified phone",
            options_from(PHONE),
            "access_admitted",
            "verified",
        ),
    ];
    let mut samples = vec![[Vec::new(), Vec::new()]; frames.len()];
    for round in 0..rounds {
        for subject in round_order(2, round, rounds) {
            for (index, (_, frame, _, _)) in frames.iter().enumerate() {
                let filter = if subject == 0 { &mut off } else { &mut on };
                let result = filter.loaded.program().test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat,
                    ..TestRunOptions::default()
                })?;
                samples[index][subject].push(result.duration.as_nanos() as f64);
            }
        }
    }
    // Every run landed where the row says.
    for (filter, verified) in [(&off, false), (&on, true)] {
        let stats = filter.stats();
        let reason = |r| {
            stats
                .get(sipguard_common::abi::Zone::Access, r, false)
                .packets
        };
        use sipguard_common::abi::Reason;
        let runs = rounds as u64 * u64::from(repeat);
        anyhow::ensure!(
            reason(Reason::AccessAdmitted) == if verified { runs } else { 2 * runs },
            "unexpected verdicts: {stats:?}"
        );
        anyhow::ensure!(reason(Reason::Verified) == if verified { runs } else { 0 });
    }
    Ok(frames
        .iter()
        .zip(samples)
        .map(|((name, _, verdict_off, verdict_on), [off, on])| JudgeRow {
            frame: name,
            verdict_off,
            verdict_on,
            ratio: Summary::of(
                &on.iter()
                    .zip(&off)
                    .map(|(n, f)| n / f.max(1.0))
                    .collect::<Vec<_>>(),
            ),
            off: Summary::of(&off),
            on: Summary::of(&on),
        })
        .collect())
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct EgressRow {
    pub frame: &'static str,
    /// ns per run: the floor, sipguard's egress with the feedback off, and on.
    pub floor: Summary,
    pub off: Summary,
    pub on: Summary,
    /// Per-round ratios to the floor.
    pub off_ratio: Summary,
    pub on_ratio: Summary,
}

/// `rounds` interleaved rounds of `repeat` runs per (program, frame).
pub(crate) fn measure(rounds: usize, repeat: u32) -> Result<Vec<EgressRow>> {
    let mut off = TestFilter::new(&policy(OFF));
    let mut on = TestFilter::new(&policy(ON));
    let mut baselines = EbpfLoader::new().load(sipguard::BASELINES_OBJECT)?;
    let floor: &mut SchedClassifier = baselines
        .program_mut("bench_tc_pass")
        .context("bench_tc_pass missing from the baselines object")?
        .try_into()?;
    floor.load()?;
    let frames = frames();
    // samples[frame][subject]: floor, off, on.
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; frames.len()];
    for round in 0..rounds {
        for subject in round_order(3, round, rounds) {
            for (index, (_, frame)) in frames.iter().enumerate() {
                let options = TestRunOptions {
                    data_in: Some(frame),
                    repeat,
                    ..TestRunOptions::default()
                };
                let result = match subject {
                    0 => floor.test_run(options)?,
                    1 => off.loaded.egress().test_run(options)?,
                    _ => on.loaded.egress().test_run(options)?,
                };
                samples[index][subject].push(result.duration.as_nanos() as f64);
            }
        }
    }
    Ok(frames
        .iter()
        .zip(samples)
        .map(|((name, _), [floor, off, on])| {
            let ratio = |of: &[f64]| -> Vec<f64> {
                of.iter().zip(&floor).map(|(x, f)| x / f.max(1.0)).collect()
            };
            EgressRow {
                frame: name,
                off_ratio: Summary::of(&ratio(&off)),
                on_ratio: Summary::of(&ratio(&on)),
                floor: Summary::of(&floor),
                off: Summary::of(&off),
                on: Summary::of(&on),
            }
        })
        .collect())
}
