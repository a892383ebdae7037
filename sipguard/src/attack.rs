//! Attack detection for the access gate (`[access] unverified = "under-attack"`): `sipguard
//! run` samples the access zone's counters every second and shuts the gate while an attack
//! is on, opening it again after a quiet period. A decision of the operator
//! (`sipguard attack-mode on|off`) stands until `attack-mode auto`.
//!
//! An attack starts when the new-source budget stays saturated (new sources refused every
//! second) for `saturated_for`, or at once when the access zone drops more than
//! `drops_per_second`. It ends after `quiet_for` without either, and without the packets the
//! shut gate refuses arriving at the new-source budget's rate: those would saturate it again
//! the moment the gate opened, so the gate does not flap under a flood it holds back.

use std::time::Duration;

/// When an attack is on (`sipguard run --attack-*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttackSettings {
    /// The new-source budget saturated this long: an attack.
    pub saturated_for: Duration,
    /// Access-zone drops per second that make an attack at once.
    pub drops_per_second: f64,
    /// This long without a sign of attack: over.
    pub quiet_for: Duration,
}

impl Default for AttackSettings {
    fn default() -> Self {
        AttackSettings {
            saturated_for: Duration::from_secs(5),
            drops_per_second: 5000.0,
            quiet_for: Duration::from_secs(60),
        }
    }
}

/// One second of the access zone, as rates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AccessRates {
    /// New sources refused (`new_source_limited`) per second.
    pub new_sources_refused: f64,
    /// Packets the shut gate refused (`unverified`) per second.
    pub unverified: f64,
    /// Every access-zone drop per second.
    pub drops: f64,
    /// The new-source budget's rate (`[access] new_sources`).
    pub new_sources_rate: f64,
}

/// The detector's state; [`AttackDetector::observe`] once a second.
#[derive(Clone, Debug, Default)]
pub struct AttackDetector {
    settings: AttackSettings,
    under_attack: bool,
    saturated_since_ms: Option<u64>,
    quiet_since_ms: Option<u64>,
}

impl AttackDetector {
    pub fn new(settings: AttackSettings, under_attack: bool) -> AttackDetector {
        AttackDetector {
            settings,
            under_attack,
            ..AttackDetector::default()
        }
    }

    pub fn under_attack(&self) -> bool {
        self.under_attack
    }

    /// Takes the state the gate is in (the operator switched, or a restart): the detector
    /// goes on from there.
    pub fn resync(&mut self, under_attack: bool) {
        if self.under_attack != under_attack {
            self.under_attack = under_attack;
            self.saturated_since_ms = None;
            self.quiet_since_ms = None;
        }
    }

    /// Feeds one sample taken at `now_ms`; returns the new state when it changes.
    pub fn observe(&mut self, now_ms: u64, rates: AccessRates) -> Option<bool> {
        let saturated = rates.new_sources_refused > 0.0;
        let heavy = rates.drops >= self.settings.drops_per_second;
        let held_back = rates.new_sources_rate > 0.0 && rates.unverified >= rates.new_sources_rate;
        if saturated {
            self.saturated_since_ms.get_or_insert(now_ms);
        } else {
            self.saturated_since_ms = None;
        }
        if self.under_attack {
            if saturated || heavy || held_back {
                self.quiet_since_ms = None;
                return None;
            }
            let since = *self.quiet_since_ms.get_or_insert(now_ms);
            if elapsed(since, now_ms) >= self.settings.quiet_for {
                self.under_attack = false;
                self.quiet_since_ms = None;
                return Some(false);
            }
            return None;
        }
        let long_saturated = self
            .saturated_since_ms
            .is_some_and(|since| elapsed(since, now_ms) >= self.settings.saturated_for);
        if heavy || long_saturated {
            self.under_attack = true;
            self.saturated_since_ms = None;
            return Some(true);
        }
        None
    }
}

fn elapsed(since_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(since_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: AttackSettings = AttackSettings {
        saturated_for: Duration::from_secs(5),
        drops_per_second: 5000.0,
        quiet_for: Duration::from_secs(60),
    };

    fn rates(refused: f64, unverified: f64, drops: f64) -> AccessRates {
        AccessRates {
            new_sources_refused: refused,
            unverified,
            drops,
            new_sources_rate: 200.0,
        }
    }

    /// Feeds one sample a second from `start` (seconds) and returns the seconds at which the
    /// state changed, with the new state.
    fn run(
        detector: &mut AttackDetector,
        start: u64,
        seconds: u64,
        sample: AccessRates,
    ) -> Vec<(u64, bool)> {
        (start..start + seconds)
            .filter_map(|second| {
                detector
                    .observe(second * 1000, sample)
                    .map(|state| (second, state))
            })
            .collect()
    }

    #[test]
    fn saturation_makes_an_attack_only_once_it_lasts() {
        let mut detector = AttackDetector::new(SETTINGS, false);
        // Four seconds of saturation, a pause, four more: never five in a row.
        assert!(run(&mut detector, 0, 4, rates(10.0, 0.0, 300.0)).is_empty());
        assert!(run(&mut detector, 4, 1, rates(0.0, 0.0, 10.0)).is_empty());
        assert!(run(&mut detector, 5, 4, rates(10.0, 0.0, 300.0)).is_empty());
        // The fifth second in a row (at +5 s from the start of the run) switches it on.
        assert_eq!(
            run(&mut detector, 9, 3, rates(10.0, 0.0, 300.0)),
            vec![(10, true)]
        );
        assert!(detector.under_attack());
    }

    #[test]
    fn a_heavy_drop_rate_makes_an_attack_at_once() {
        let mut detector = AttackDetector::new(SETTINGS, false);
        assert!(run(&mut detector, 0, 3, rates(0.0, 0.0, 4999.0)).is_empty());
        assert_eq!(
            run(&mut detector, 3, 1, rates(0.0, 0.0, 5000.0)),
            vec![(3, true)]
        );
    }

    #[test]
    fn the_gate_holds_while_the_flood_it_refuses_goes_on_and_opens_after_the_quiet_period() {
        let mut detector = AttackDetector::new(SETTINGS, true);
        // Shut: the flood is refused as unverified at 3000/s, over the new-source rate (200/s),
        // and below the heavy threshold: still an attack, for as long as it lasts.
        assert!(run(&mut detector, 0, 600, rates(0.0, 3000.0, 3000.0)).is_empty());
        // It stops: open after 60 quiet seconds, not before.
        assert_eq!(
            run(&mut detector, 600, 120, rates(0.0, 5.0, 5.0)),
            vec![(660, false)]
        );
        // A single sign of attack restarts the quiet period.
        let mut detector = AttackDetector::new(SETTINGS, true);
        assert!(run(&mut detector, 0, 59, rates(0.0, 0.0, 0.0)).is_empty());
        assert!(run(&mut detector, 59, 1, rates(1.0, 0.0, 0.0)).is_empty());
        assert_eq!(
            run(&mut detector, 60, 61, rates(0.0, 0.0, 0.0)),
            vec![(120, false)]
        );
    }

    #[test]
    fn an_operator_switch_is_taken_as_the_new_state() {
        let mut detector = AttackDetector::new(SETTINGS, false);
        assert!(run(&mut detector, 0, 3, rates(10.0, 0.0, 0.0)).is_empty());
        detector.resync(true);
        assert!(detector.under_attack());
        assert_eq!(
            run(&mut detector, 3, 61, rates(0.0, 0.0, 0.0)),
            vec![(63, false)]
        );
    }
}
