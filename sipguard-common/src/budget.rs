//! Rate budgets: GCRA token buckets and ban strikes, as pure functions on explicit time.
//!
//! A budget of `rate` packets per second with a `burst` is a generic cell rate algorithm (GCRA):
//! the whole bucket state is one 64-bit "theoretical arrival time" (TAT), so the kernel can update
//! it with a single compare-and-swap shared by all CPUs: exact admission, no per-CPU copies.
//!
//! ```text
//!   interval = 1 s / rate           tau = (burst - 1) x interval
//!   packet at now:  base = max(tat, now)
//!                   base - now <= tau            -> admitted, tat = base + interval
//!                   tat > now + tau + interval   -> admitted, tat = now + tau + interval
//!                   otherwise                    -> over budget, state unchanged
//! ```
//!
//! Under fixed limits the TAT never runs further ahead than an empty bucket, `now + tau +
//! interval`, so the second rule never fires. It fires when an operator raises a class's rate
//! live: a debt built up at the old, slower rate then counts as one last packet and an empty
//! bucket at the new rate, so the change acts on the next packet instead of after the old debt.
//!
//! After an idle period a source may send `burst` packets back to back; sustained, it gets `rate`
//! per second; over any window of length T it gets at most `burst + rate x T`.
//!
//! The data plane's clock advances in kernel ticks (jiffies), and two CPUs may read it a tick
//! apart for an instant. [`Gcra::admit_on_tick`] widens the window by one tick (`tau + tick`:
//! otherwise a step of the clock larger than `tau` resets the TAT and caps the rate at `burst`
//! per tick) and the debt rule by two (so that a CPU a tick behind never takes the TAT of a CPU
//! ahead of it for a debt). The long-run rate stays exact; over a window T a source gets at most
//! `burst + rate x (T + tick)`.

/// Nanoseconds per second.
pub const NANOS: u64 = 1_000_000_000;

/// A budget in the form the data plane uses. `interval_ns == 0` means unlimited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds of budget one packet costs.
    pub interval_ns: u64,
    /// How far ahead of now the TAT may run: (burst - 1) x interval.
    pub tau_ns: u64,
}

impl Gcra {
    pub const UNLIMITED: Gcra = Gcra {
        interval_ns: 0,
        tau_ns: 0,
    };

    /// `rate` packets per second with bursts of up to `burst` packets. Rate 0 means unlimited;
    /// a rate above one per nanosecond is unlimited too. Burst 0 counts as 1.
    pub const fn new(rate: u64, burst: u64) -> Gcra {
        if rate == 0 || rate > NANOS {
            return Gcra::UNLIMITED;
        }
        let interval_ns = NANOS / rate;
        let burst = if burst == 0 { 1 } else { burst };
        Gcra {
            interval_ns,
            tau_ns: (burst - 1).saturating_mul(interval_ns),
        }
    }

    /// Splits a budget (rate and burst) evenly over `parts` independent per-CPU buckets.
    pub const fn split(self, parts: u64) -> Gcra {
        if self.interval_ns == 0 || parts <= 1 {
            return self;
        }
        Gcra {
            interval_ns: self.interval_ns.saturating_mul(parts),
            tau_ns: self.tau_ns,
        }
    }

    pub const fn is_unlimited(&self) -> bool {
        self.interval_ns == 0
    }

    /// The TAT after admitting one packet at `now`, or `None` when the packet is over budget.
    #[inline(always)]
    pub fn admit(&self, tat: u64, now: u64) -> Option<u64> {
        self.admit_on_tick(tat, now, 0)
    }

    /// [`Gcra::admit`] on a clock that advances in steps of `tick_ns` (see the module docs).
    #[inline(always)]
    pub fn admit_on_tick(&self, tat: u64, now: u64, tick_ns: u64) -> Option<u64> {
        if self.interval_ns == 0 {
            return Some(tat);
        }
        let base = if tat > now { tat } else { now };
        if base - now <= self.tau_ns.saturating_add(tick_ns) {
            return Some(base.saturating_add(self.interval_ns));
        }
        let empty = now
            .saturating_add(self.tau_ns)
            .saturating_add(self.interval_ns)
            .saturating_add(tick_ns.saturating_mul(2));
        if tat > empty { Some(empty) } else { None }
    }

    /// The TAT of a source seen for the first time, after its first (admitted) packet.
    #[inline(always)]
    pub fn first(&self, now: u64) -> u64 {
        now.saturating_add(self.interval_ns)
    }
}

/// When a source that keeps exceeding its budget gets banned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanRule {
    /// Over-budget packets within `window_ns` that trigger a ban; 0 disables auto-bans.
    pub threshold: u32,
    pub _reserved: u32,
    pub window_ns: u64,
    /// How long a ban lasts.
    pub ttl_ns: u64,
}

/// Over-budget packets of one source in the current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strikes {
    pub window_start_ns: u64,
    pub count: u32,
}

impl BanRule {
    /// Counts one over-budget packet at `now`; true when it reaches the threshold.
    #[inline(always)]
    pub fn strike(&self, strikes: &mut Strikes, now: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        if now.saturating_sub(strikes.window_start_ns) > self.window_ns {
            strikes.window_start_ns = now;
            strikes.count = 0;
        }
        strikes.count = strikes.count.saturating_add(1);
        strikes.count >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Offers one packet every `gap` ns for `duration` ns; returns how many were admitted.
    fn offer(gcra: &Gcra, start: u64, gap: u64, duration: u64) -> (u64, u64) {
        let mut tat = 0;
        let mut admitted = 0;
        let mut now = start;
        while now < start + duration {
            if let Some(next) = gcra.admit(tat, now) {
                tat = next;
                admitted += 1;
            }
            now += gap;
        }
        (admitted, tat)
    }

    #[test]
    fn a_burst_after_idle_is_admitted_whole_then_the_rate_applies() {
        let gcra = Gcra::new(100, 10);
        // 1000 packets at the same instant: exactly the burst.
        let mut tat = 0;
        let admitted = (0..1000)
            .filter(|_| match gcra.admit(tat, 5 * NANOS) {
                Some(next) => {
                    tat = next;
                    true
                }
                None => false,
            })
            .count();
        assert_eq!(admitted, 10);
        // Saturated for 2 s at 10 kpps: burst + rate x elapsed.
        let (admitted, _) = offer(&gcra, 10 * NANOS, 100_000, 2 * NANOS);
        assert!((209..=211).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_source_under_its_rate_loses_nothing() {
        let gcra = Gcra::new(1000, 1);
        // One packet per 1.0 ms exactly at the rate, and one per 1.5 ms below it.
        assert_eq!(offer(&gcra, NANOS, MS, NANOS).0, 1000);
        assert_eq!(offer(&gcra, NANOS, 3 * MS / 2, 3 * NANOS / 2).0, 1000);
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let gcra = Gcra::new(10, 5);
        let (_, tat) = offer(&gcra, NANOS, MS, NANOS);
        // An hour idle refills only the burst.
        let mut tat = tat;
        let later = tat + 3600 * NANOS;
        let admitted = (0..100)
            .filter(|_| match gcra.admit(tat, later) {
                Some(next) => {
                    tat = next;
                    true
                }
                None => false,
            })
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_faster_rate_acts_on_the_next_packet_and_a_slower_one_keeps_the_debt() {
        let slow = Gcra::new(1, 2);
        let mut tat = 0;
        for _ in 0..2 {
            tat = slow.admit(tat, NANOS).unwrap();
        }
        assert_eq!(slow.admit(tat, NANOS), None, "drained");
        let fast = Gcra::new(100_000, 100_000);
        let empty = fast
            .admit(tat, NANOS)
            .expect("the next packet has the new budget");
        assert_eq!(
            empty,
            NANOS + fast.tau_ns + fast.interval_ns,
            "and leaves an empty bucket"
        );
        assert_eq!(fast.admit(empty, NANOS), None);
        assert!(
            fast.admit(empty, NANOS + fast.interval_ns).is_some(),
            "one new interval later"
        );
        // Slower limits: a small debt is kept and paid at the new, longer interval.
        let fast_tat = fast.admit(0, NANOS).unwrap();
        let slower = Gcra::new(10, 1);
        assert_eq!(slower.admit(fast_tat, NANOS), None);
        assert!(slower.admit(fast_tat, NANOS + fast.interval_ns).is_some());
    }

    /// Offers a packet every `gap` ns for one second on a clock quantized to `tick` and read by
    /// two CPUs in turn, the second `skew` ns behind; returns the admitted count.
    fn offer_on_ticks(gcra: &Gcra, gap: u64, tick: u64, skew: u64) -> u64 {
        let start = 1_000 * NANOS;
        let mut tat = 0;
        let mut admitted = 0;
        let mut real = start;
        let mut cpu = 0;
        while real < start + NANOS {
            let seen = real - cpu * skew;
            let now = seen - seen % tick;
            if let Some(next) = gcra.admit_on_tick(tat, now, tick) {
                tat = next;
                admitted += 1;
            }
            real += gap;
            cpu ^= 1;
        }
        admitted
    }

    #[test]
    fn a_tick_clock_keeps_the_rate_even_when_the_burst_is_shorter_than_a_tick() {
        const TICK: u64 = 4 * MS;
        for (rate, burst) in [(10_000, 1), (1_000_000, 100), (100_000, 1_000), (10, 20)] {
            let gcra = Gcra::new(rate, burst);
            for skew in [0, TICK] {
                // Offered at 4x the rate (at most one packet a nanosecond).
                let gap = (NANOS / rate / 4).max(1);
                let admitted = offer_on_ticks(&gcra, gap, TICK, skew);
                let floor = rate - rate * TICK / NANOS;
                let ceiling = burst + rate + 2 * rate * TICK / NANOS + 2;
                assert!(
                    (floor..=ceiling).contains(&admitted),
                    "{rate}/s burst {burst}, skew {skew}: {admitted} not in {floor}..={ceiling}"
                );
            }
        }
    }

    #[test]
    fn extreme_rates_and_times_do_not_overflow() {
        assert!(Gcra::new(0, 10).is_unlimited());
        assert!(Gcra::new(NANOS + 1, 10).is_unlimited());
        assert_eq!(Gcra::UNLIMITED.admit(7, u64::MAX), Some(7));
        let fastest = Gcra::new(NANOS, u64::MAX);
        assert_eq!(fastest.interval_ns, 1);
        assert_eq!(fastest.tau_ns, u64::MAX - 1);
        let slowest = Gcra::new(1, u64::MAX);
        assert_eq!(slowest.tau_ns, u64::MAX, "saturates");
        // Near the end of time the TAT saturates instead of wrapping to 0.
        let gcra = Gcra::new(1, 1);
        assert_eq!(gcra.admit(0, u64::MAX - 10), Some(u64::MAX));
        assert_eq!(gcra.admit(u64::MAX, u64::MAX - 10), None);
        // A TAT far in the past (long idle) is just "now".
        assert_eq!(gcra.admit(1, 1_000 * NANOS), Some(1_001 * NANOS));
        assert_eq!(Gcra::new(3, 0), Gcra::new(3, 1), "burst 0 counts as 1");
    }

    #[test]
    fn a_budget_split_over_cpus_adds_up_to_the_whole() {
        let whole = Gcra::new(1000, 100);
        let part = whole.split(4);
        let (admitted, _) = offer(&part, NANOS, 10_000, 10 * NANOS);
        // Rate and burst both split: each part gets burst 25 + 250/s x 10 s.
        assert!((2524..=2526).contains(&admitted), "{admitted}");
        assert_eq!(Gcra::UNLIMITED.split(4), Gcra::UNLIMITED);
        assert_eq!(whole.split(1), whole);
    }

    #[test]
    fn strikes_ban_at_the_threshold_within_the_window_only() {
        let rule = BanRule {
            threshold: 3,
            _reserved: 0,
            window_ns: 10 * NANOS,
            ttl_ns: 60 * NANOS,
        };
        let mut strikes = Strikes::default();
        assert!(!rule.strike(&mut strikes, 100 * NANOS));
        assert!(!rule.strike(&mut strikes, 101 * NANOS));
        // The window passed: counting starts over.
        assert!(!rule.strike(&mut strikes, 120 * NANOS));
        assert!(!rule.strike(&mut strikes, 121 * NANOS));
        assert!(rule.strike(&mut strikes, 122 * NANOS));
        let off = BanRule::default();
        let mut strikes = Strikes::default();
        assert!((0..1000).all(|i| !off.strike(&mut strikes, i)));
    }
}
