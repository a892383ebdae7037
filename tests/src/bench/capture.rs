//! What evidence capture costs the data plane: the same filter with no capture, with a
//! capture on that matches nothing (every hook tail-calls the capture stage, which copies
//! nothing), and with a capture that copies every packet (budget unlimited, ring drained between
//! measurements), side by side in interleaved rounds with a bare XDP_DROP program.

use std::net::Ipv4Addr;

use anyhow::{Result, ensure};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use serde::Serialize;
use sipguard::capture::{Budget, Filter, Session};
use sipguard_common::abi::capture_slot;
use sipguard_tests::{frames::Packet, harness::TestFilter};

use super::{
    per_packet::Baselines,
    stats::{Summary, round_order},
};

const SBC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 1000000, burst = 1000000 }
[classes]
phones = { rate = 1000000, burst = 1000000 }
[[allow]]
name = "carrier"
cidrs = ["198.18.1.0/24"]
"#;

#[derive(Clone, Debug, Serialize)]
pub(crate) struct CaptureRow {
    pub frame: &'static str,
    pub verdict: &'static str,
    /// ns per run: bare XDP_DROP, sipguard without a capture, with a capture that matches
    /// nothing, with a capture that copies every packet.
    pub bare_drop: Summary,
    pub off: Summary,
    pub armed: Summary,
    pub copying: Summary,
    /// Per-round ratios: off / bare drop, armed / off, copying / off.
    pub off_ratio: Summary,
    pub armed_ratio: Summary,
    pub copying_ratio: Summary,
    /// Per-round ns a copied packet costs: copying - off.
    pub copy_ns: Summary,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Bare,
    Off,
    Armed,
    Copying,
}

const SUBJECTS: [Subject; 4] = [
    Subject::Bare,
    Subject::Off,
    Subject::Armed,
    Subject::Copying,
];

fn time(program: &Xdp, frame: &[u8], repeat: u32) -> Result<f64> {
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    })?;
    Ok(result.duration.as_nanos() as f64)
}

pub(crate) fn measure(rounds: usize, repeat: u32) -> Result<Vec<CaptureRow>> {
    // Records are ~48 + frame + 8 bytes: one call's worth fits the 4 MiB ring.
    let repeat = repeat.min(10_000);
    let options = |src: Ipv4Addr, port: u16| {
        Packet::udp4(
            src,
            SBC,
            5062,
            port,
            b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .build()
    };
    let frames = [
        (
            "trunk, unknown source (the entry's flood drop)",
            options(Ipv4Addr::new(198, 18, 2, 10), 5060),
            "drop (not_allowlisted)",
        ),
        (
            "trunk, allowlisted (the entry's pass)",
            options(Ipv4Addr::new(198, 18, 1, 10), 5060),
            "pass (allowlisted)",
        ),
        (
            "access, unknown source (the judge's pass)",
            options(Ipv4Addr::new(198, 18, 2, 10), 5070),
            "pass (access_admitted)",
        ),
    ];
    let mut filter = TestFilter::new(POLICY);
    let baselines = Baselines::load()?;
    let target = filter.target.clone();
    let nothing = Filter {
        include_passed: true,
        source: Some("203.0.113.0/24".parse()?),
        ..Filter::default()
    };
    let everything = Filter {
        include_passed: true,
        ..Filter::default()
    };
    let unlimited = Budget {
        packets_per_second: u32::MAX,
        bytes_per_second: u32::MAX,
    };
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new(), Vec::new()]; frames.len()];
    let mut copied = 0u64;
    let mut lost = 0u64;
    for round in 0..rounds {
        for index in round_order(SUBJECTS.len(), round, rounds) {
            let subject = SUBJECTS[index];
            let mut session = match subject {
                Subject::Armed => Some(Session::start(
                    &target,
                    capture_slot::LIVE,
                    &nothing,
                    unlimited,
                )?),
                Subject::Copying => Some(Session::start(
                    &target,
                    capture_slot::LIVE,
                    &everything,
                    unlimited,
                )?),
                Subject::Bare | Subject::Off => None,
            };
            for (row, (_, frame, _)) in frames.iter().enumerate() {
                let ns = if subject == Subject::Bare {
                    time(baselines.program("bench_drop")?, frame, repeat)?
                } else {
                    time(filter.loaded.program(), frame, repeat)?
                };
                samples[row][index].push(ns);
                if let Some(session) = session.as_mut() {
                    session.drain(|_| {});
                }
            }
            if let Some(session) = session.as_mut() {
                let stats = session.stats()?;
                copied += stats.copied;
                lost += stats.ring_full + stats.over_budget;
            }
        }
    }
    let expected = rounds as u64 * u64::from(repeat) * frames.len() as u64;
    ensure!(
        copied == expected && lost == 0,
        "the copying capture copied {copied} of {expected} runs ({lost} not copied)"
    );
    Ok(frames
        .iter()
        .zip(samples)
        .map(|((name, _, verdict), [bare, off, armed, copying])| {
            let per_round = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| {
                Summary::of(&a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect::<Vec<_>>())
            };
            CaptureRow {
                frame: name,
                verdict,
                off_ratio: per_round(&off, &bare, |a, b| a / b.max(1.0)),
                armed_ratio: per_round(&armed, &off, |a, b| a / b.max(1.0)),
                copying_ratio: per_round(&copying, &off, |a, b| a / b.max(1.0)),
                copy_ns: per_round(&copying, &off, |a, b| a - b),
                bare_drop: Summary::of(&bare),
                off: Summary::of(&off),
                armed: Summary::of(&armed),
                copying: Summary::of(&copying),
            }
        })
        .collect())
}
