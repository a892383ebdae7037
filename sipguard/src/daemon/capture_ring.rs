//! The rolling capture of drops (`sipguard run --capture-ring-bytes`): one thread per
//! interface keeps the kernel's rolling slot on (renewing its lease), drains its ring into a
//! bounded in-memory [`RollingRing`], and `GET /api/capture/ring` saves it as pcapng.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use sipguard_common::abi::capture_slot;

use crate::{
    capture::{
        Budget, Filter, RENEW_INTERVAL, Session, pcapng::EvidenceWriter, record::Captured,
        rolling::RollingRing,
    },
    state::{State, Target},
    time::{Clock, boot_now_ns},
};

/// Bounds of the rolling capture.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// One interface's ring.
pub(crate) struct Ring {
    pub(crate) target: Target,
    pub(crate) packets: Mutex<RollingRing>,
}

/// The rings and their threads; dropping it (or [`Rings::stop`]) turns the kernel slots off.
pub(crate) struct Rings {
    pub(crate) rings: Vec<Arc<Ring>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Rings {
    /// Claims the rolling slot of every target (an error if another process holds one).
    pub(crate) fn start(targets: &[Target], config: RingConfig) -> Result<Rings> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut rings = Vec::new();
        let mut threads = Vec::new();
        for target in targets {
            let filter = Filter::default();
            let session = Session::start(target, capture_slot::ROLLING, &filter, Budget::default())
                .with_context(|| format!("rolling capture on {}", target.label()))?;
            let ring = Arc::new(Ring {
                target: target.clone(),
                packets: Mutex::new(RollingRing::new(
                    config.max_bytes,
                    config.max_age.as_nanos().min(u128::from(u64::MAX)) as u64,
                )),
            });
            let (keep, stop) = (ring.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ring-{}", target.label()))
                    .spawn(move || keep_ring(session, &keep, &stop))?,
            );
            rings.push(ring);
        }
        Ok(Rings {
            rings,
            stop,
            threads,
        })
    }

    /// Turns the kernel's copying off and waits for the threads.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// The rings' packets that pass `filter`, as pcapng (`iface`: one interface's label).
    pub(crate) fn save(&self, filter: &Filter, iface: Option<&str>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let rings: Vec<&Arc<Ring>> = self
            .rings
            .iter()
            .filter(|ring| {
                iface.is_none_or(|i| ring.target.label() == i || ring.target.iface() == i)
            })
            .collect();
        let names = rings
            .first()
            .and_then(|ring| State::open(&ring.target).ok())
            .and_then(|state| crate::sip_stats::names_by_id(&state).ok())
            .unwrap_or_default();
        let mut writer = EvidenceWriter::new(&mut out, Clock::now(), names)?;
        for ring in rings {
            let label = ring.target.label();
            let packets = ring
                .packets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for packet in packets.iter().filter(|p| p.matches(filter)) {
                writer.write(&label, packet)?;
            }
        }
        drop(writer);
        Ok(out)
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keep_ring(mut session: Session, ring: &Ring, stop: &AtomicBool) {
    let mut renewed = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        session.wait(Duration::from_millis(200));
        let now = boot_now_ns();
        let mut packets = ring
            .packets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        session.drain(|bytes| {
            if let Some(packet) = Captured::decode(bytes) {
                packets.push(packet, now);
            }
        });
        packets.trim(now);
        drop(packets);
        if renewed.elapsed() >= RENEW_INTERVAL {
            if let Err(error) = session.renew() {
                log::warn!("rolling capture of {}: {error}", ring.target.label());
            }
            renewed = Instant::now();
        }
    }
    if let Err(error) = session.stop() {
        log::warn!("rolling capture of {}: {error}", ring.target.label());
    }
}
