//! The real XDP program under `BPF_PROG_TEST_RUN`, with its verdict decoded from the counters.

use aya::programs::{TestRun as _, TestRunOptions};
use sipguard::{
    apply::apply,
    dataplane::{Loaded, load},
    policy::Policy,
    state::Target,
};
use sipguard_common::abi::{Counter, REASON_SLOTS, Reason, Zone};

use crate::pins::TempPinRoot;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What the program did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `XDP_PASS` or `XDP_DROP`.
    pub action: u32,
    pub zone: Zone,
    pub reason: Reason,
    /// A drop verdict only counted (monitor mode).
    pub monitored: bool,
}

/// The verdict of a packet that passes, enforcing.
pub fn pass(zone: Zone, reason: Reason) -> Verdict {
    Verdict {
        action: XDP_PASS,
        zone,
        reason,
        monitored: false,
    }
}

/// The verdict of a packet that is dropped, enforcing.
pub fn drop(zone: Zone, reason: Reason) -> Verdict {
    Verdict {
        action: XDP_DROP,
        zone,
        reason,
        monitored: false,
    }
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.action == XDP_PASS
    }
}

/// sipguard loaded on fresh pinned maps, not attached to any interface.
pub struct TestFilter {
    pub loaded: Loaded,
    pub target: Target,
    // Last: the pins go after the program and maps are closed.
    _pins: TempPinRoot,
}

impl TestFilter {
    /// Loads sipguard with a policy given as TOML text.
    pub fn new(policy: &str) -> TestFilter {
        let policy = Policy::parse(policy, "test-policy.toml").unwrap_or_else(|e| panic!("{e}"));
        Self::with_policy(&policy)
    }

    pub fn with_policy(policy: &Policy) -> TestFilter {
        let pins = TempPinRoot::new("testrun");
        let target = Target::new("testrun", None, pins.path()).expect("valid names");
        let loaded = load(&target, Some(policy), None).unwrap_or_else(|e| panic!("load: {e}"));
        TestFilter {
            loaded,
            target,
            _pins: pins,
        }
    }

    /// Applies another policy (the same path as `sipguard apply`).
    pub fn apply(&mut self, policy: &str) {
        let policy = Policy::parse(policy, "test-policy.toml").unwrap_or_else(|e| panic!("{e}"));
        apply(&mut self.live(), &policy, None).unwrap_or_else(|e| panic!("apply: {e}"));
    }

    /// The state locked for a change, as every command takes it (which sweeps expired bans).
    /// Drop it before running a CLI command that changes state: that command waits for the lock.
    pub fn live(&self) -> sipguard::state::LiveState {
        sipguard::state::LiveState::lock(&self.target).unwrap_or_else(|e| panic!("lock: {e}"))
    }

    pub fn counters(&self) -> Vec<Counter> {
        self.loaded.state.counters().expect("read counters")
    }

    /// Runs the program once on `frame`; the kernel may refuse the frame.
    pub fn try_run(&mut self, frame: &[u8]) -> Result<u32, aya::programs::ProgramError> {
        self.loaded
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: 1,
                ..TestRunOptions::default()
            })
            .map(|result| result.return_value)
    }

    /// Runs the program `repeat` times on `frame` in one `BPF_PROG_TEST_RUN` call.
    pub fn run_repeated(&mut self, frame: &[u8], repeat: u32) {
        self.loaded
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test_run x{repeat}: {e}"));
    }

    /// The entries of a list in the active generation.
    pub fn rules(
        &self,
        list: sipguard::state::List,
    ) -> std::collections::BTreeMap<sipguard::policy::Prefix, sipguard_common::abi::RuleValue> {
        let state = &self.loaded.state;
        state
            .rules(state.active_generation().expect("active generation"), list)
            .expect("read rules")
    }

    /// Counters summed over CPUs, by zone and reason.
    pub fn stats(&self) -> sipguard::report::Stats {
        sipguard::report::Stats::read(&self.loaded.state).expect("read stats")
    }

    /// Runs the TC egress entry `repeat` times on an outgoing `frame` (an answer of the SBC);
    /// its return value (`TC_ACT_OK`: every packet leaves).
    pub fn run_egress(&mut self, frame: &[u8], repeat: u32) -> i32 {
        self.loaded
            .egress()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("egress test_run: {e}"))
            .return_value as i32
    }

    /// Runs the program once on `frame` and returns its action only.
    pub fn action(&mut self, frame: &[u8]) -> u32 {
        self.try_run(frame)
            .unwrap_or_else(|e| panic!("test_run on a {}-byte frame: {e}", frame.len()))
    }

    /// Runs the program once on `frame`; the counter slot that moved names the verdict.
    pub fn run(&mut self, frame: &[u8]) -> Verdict {
        let before = self.counters();
        let action = self.action(frame);
        let after = self.counters();
        let moved: Vec<usize> = (0..before.len())
            .filter(|i| before[*i] != after[*i])
            .collect();
        assert_eq!(
            moved.len(),
            1,
            "exactly one counter slot moves per packet (frame of {} bytes)",
            frame.len()
        );
        let index = moved[0];
        assert_eq!(after[index].packets - before[index].packets, 1);
        assert_eq!(after[index].bytes - before[index].bytes, frame.len() as u64);
        let slot = index >> 1;
        let zone = Zone::from_u8((slot / REASON_SLOTS) as u8);
        let reason = Reason::from_u8((slot % REASON_SLOTS) as u8).expect("known reason slot");
        Verdict {
            action,
            zone,
            reason,
            monitored: index & 1 == 1,
        }
    }
}

/// Everything in the event ring buffer of `target` (consumes it).
pub fn drain_events(target: &Target) -> Vec<sipguard::events::EventRecord> {
    use aya::maps::{Map, MapData, RingBuf};
    let pin = target.map_pin(sipguard_common::abi::map_name::EVENTS);
    let data = MapData::from_pin(&pin).expect("open the event ring");
    let mut ring = RingBuf::try_from(Map::from_map_data(data).expect("map")).expect("ring");
    let clock = sipguard::time::Clock::now();
    let mut names = sipguard::events::RuleNames::new(target.clone());
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(mut event) =
            sipguard::events::EventRecord::decode(&item, &target.label(), &clock)
        {
            names.name(&mut event);
            events.push(event);
        }
    }
    events
}

/// What [`flood_one_source`] measured.
pub struct SharedFlood {
    /// Runs in all (every CPU).
    pub runs: u64,
    pub admitted: u64,
    /// From the common start to the last thread's end.
    pub elapsed: std::time::Duration,
    /// Each thread's test_run call.
    pub per_thread: Vec<std::time::Duration>,
}

/// One allowlisted source of class `carrier` (`rate`/s, `burst`) flooding the real program from
/// `cpus` CPUs at once: each thread pinned to its CPU, with its own program handle on the same
/// pinned maps, sharing the one bucket as a NIC's RX queues would.
pub fn flood_one_source(rate: u32, burst: u32, runs_per_cpu: u32, cpus: usize) -> SharedFlood {
    let policy = format!(
        "[trunk]\nudp = [5060]\n[classes]\ncarrier = {{ rate = {rate}, burst = {burst} }}\n\
         [[allow]]\nclass = \"carrier\"\ncidrs = [\"192.0.2.0/24\"]\n"
    );
    let frame = crate::frames::Packet::udp4(
        std::net::Ipv4Addr::new(192, 0, 2, 10),
        std::net::Ipv4Addr::new(198, 51, 100, 1),
        5060,
        5060,
        vec![b'x'; 300],
    )
    .build();
    let filter = TestFilter::new(&policy);
    // Load first, then start every flood at once: the span covers test_run only.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(cpus + 1));
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let frame = frame.clone();
            let target = filter.target.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let _pinned = crate::lab::Pinned::to(cpu);
                let mut loaded = load(&target, None, None).expect("load");
                barrier.wait();
                let started = std::time::Instant::now();
                loaded
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(&frame),
                        repeat: runs_per_cpu,
                        ..Default::default()
                    })
                    .expect("test_run");
                started.elapsed()
            })
        })
        .collect();
    barrier.wait();
    let start = std::time::Instant::now();
    let per_thread: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("flood thread"))
        .collect();
    let elapsed = start.elapsed();
    let stats = filter.stats();
    let admitted = stats.get(Zone::Trunk, Reason::Allowlisted, false).packets;
    SharedFlood {
        runs: admitted
            + stats
                .get(Zone::Trunk, Reason::PeerRateLimited, false)
                .packets,
        admitted,
        elapsed,
        per_thread,
    }
}
