//! Median and spread over interleaved rounds, and ratios taken round by round (both sides of a
//! ratio measured in the same round, so slow phases of a noisy machine cancel out).

use serde::Serialize;

/// One figure measured once per round.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median, in percent.
    pub spread_pct: f64,
    /// In round order.
    pub rounds: Vec<f64>,
}

impl Summary {
    pub(crate) fn of(samples: &[f64]) -> Summary {
        let median = median(samples);
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let spread_pct = if median > 0.0 {
            (max - min) / median * 100.0
        } else {
            0.0
        };
        Summary {
            median,
            min,
            max,
            spread_pct,
            rounds: samples.to_vec(),
        }
    }

    /// `a / b` round by round, summarised.
    pub(crate) fn ratio(a: &[f64], b: &[f64]) -> Summary {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| a / b)
            .collect();
        Summary::of(&ratios)
    }
}

pub(super) fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Rounds are run in a rotated order, reversed every other round, so that no unit always runs
/// first (cold) or right after the same neighbour.
pub(super) fn round_order(units: usize, round: usize, rounds: usize) -> Vec<usize> {
    let shift = (round * units).checked_div(rounds).unwrap_or(0);
    let mut order: Vec<usize> = (0..units).map(|i| (i + shift) % units.max(1)).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let ratio = Summary::ratio(&[10.0, 20.0, 30.0], &[5.0, 10.0, 10.0]);
        assert_eq!(ratio.median, 2.0);
        assert_eq!(ratio.max, 3.0);
        let order = round_order(5, 1, 3);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
    }
}
