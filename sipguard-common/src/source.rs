//! The life of one source's state, written once for the XDP program, the test model and the
//! controller: whom a budget or ban belongs to, a source's first state, the strike that turns
//! over-budget packets into a ban, a manual ban, and whether a ban bites.
//!
//! ```text
//!  unseen --first packet--> fresh state (tat after one packet)
//!  state  --over budget---> strike; `threshold` strikes within `window` -> ban for `ttl`
//!                           (in monitor mode: a would-be ban, never enforced)
//!  ban    --expires / would-be while enforcing--> gone
//! ```

use crate::{
    abi::{Ban, BanReason, Mode, SourceKey, SourceState, ban_flags},
    budget::{BanRule, Gcra, Strikes},
};

/// Whom budgets and bans of a source belong to: its IPv4 address, or its IPv6 address cut to
/// `ipv6_prefix` bits. `family` is 4 or 6; IPv4 addresses sit in the first four bytes.
#[inline(always)]
pub fn source_key(family: u8, addr: &[u8; 16], ipv6_prefix: u8) -> SourceKey {
    let mut key = SourceKey {
        addr: *addr,
        family,
        prefix_len: 32,
        _reserved: [0; 2],
    };
    if family == 6 {
        // Two 64-bit masks, not a loop of per-byte branches: the verifier walks every path of a
        // branch on a value it cannot know, and sixteen of them multiply.
        let prefix = if ipv6_prefix > 128 { 128 } else { ipv6_prefix };
        key.prefix_len = prefix;
        let high_mask = match prefix {
            0 => 0,
            1..=63 => u64::MAX << (64 - u32::from(prefix)),
            _ => u64::MAX,
        };
        let low_mask = match prefix {
            0..=64 => 0,
            _ => u64::MAX << (128 - u32::from(prefix)),
        };
        let mut high = [0u8; 8];
        let mut low = [0u8; 8];
        high.copy_from_slice(&key.addr[..8]);
        low.copy_from_slice(&key.addr[8..]);
        let high = u64::from_be_bytes(high) & high_mask;
        let low = u64::from_be_bytes(low) & low_mask;
        key.addr[..8].copy_from_slice(&high.to_be_bytes());
        key.addr[8..].copy_from_slice(&low.to_be_bytes());
    }
    key
}

/// The state of a source seen for the first time at `now`, after its first (admitted) packet.
#[inline(always)]
pub fn fresh_state(gcra: &Gcra, class: u16, now: u64) -> SourceState {
    SourceState {
        tat_ns: gcra.first(now),
        first_seen_ns: now,
        class,
        ..SourceState::default()
    }
}

/// Counts an over-budget packet of `state` at `now`. When it completes `rule.threshold` strikes
/// within the window, the strikes start over and the ban to store is returned: a would-be ban
/// when `mode` is monitor.
#[inline(always)]
pub fn strike(state: &mut SourceState, rule: &BanRule, now: u64, mode: Mode) -> Option<Ban> {
    let mut strikes = Strikes {
        window_start_ns: state.strike_window_ns,
        count: state.strikes,
    };
    let banned = rule.strike(&mut strikes, now);
    state.strike_window_ns = strikes.window_start_ns;
    state.strikes = if banned { 0 } else { strikes.count };
    if !banned {
        return None;
    }
    Some(Ban {
        banned_at_ns: now,
        expires_at_ns: now.saturating_add(rule.ttl_ns),
        first_seen_ns: state.first_seen_ns,
        last_seen_ns: now,
        hits: 0,
        strikes: strikes.count,
        reason: BanReason::RateExceeded as u8,
        flags: match mode {
            Mode::Monitor => ban_flags::WOULD_BE,
            Mode::Enforce => 0,
        },
        _reserved: [0; 2],
    })
}

/// A ban by hand at `now`, for `ttl_ns`.
pub fn manual_ban(now: u64, ttl_ns: u64) -> Ban {
    Ban {
        banned_at_ns: now,
        expires_at_ns: now.saturating_add(ttl_ns),
        first_seen_ns: now,
        reason: BanReason::Manual as u8,
        ..Ban::default()
    }
}

/// The ban of a source whose message matched a scanner signature, at `now`, for the TTL of the
/// policy's ban rule (a would-be ban in monitor mode).
#[inline(always)]
pub fn scanner_ban(rule: &BanRule, now: u64, mode: Mode) -> Ban {
    Ban {
        banned_at_ns: now,
        expires_at_ns: now.saturating_add(rule.ttl_ns),
        first_seen_ns: now,
        last_seen_ns: now,
        strikes: 1,
        reason: BanReason::Scanner as u8,
        flags: match mode {
            Mode::Monitor => ban_flags::WOULD_BE,
            Mode::Enforce => 0,
        },
        ..Ban::default()
    }
}

/// Whether `ban` drops its source's packet at `now`: not expired, and not a would-be ban of
/// monitor mode met while enforcing. A ban that does not bite should be removed.
#[inline(always)]
pub fn ban_bites(ban: &Ban, now: u64, mode: Mode) -> bool {
    let would_be = ban.flags & ban_flags::WOULD_BE != 0;
    now < ban.expires_at_ns && !(would_be && mode == Mode::Enforce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn strikes_within_the_window_ban_and_start_over() {
        let rule = BanRule {
            threshold: 3,
            window_ns: 10 * S,
            ttl_ns: 60 * S,
            ..BanRule::default()
        };
        let mut state = fresh_state(&Gcra::new(1, 1), 2, S);
        assert_eq!(state.class, 2);
        assert!(strike(&mut state, &rule, 2 * S, Mode::Enforce).is_none());
        assert!(strike(&mut state, &rule, 3 * S, Mode::Enforce).is_none());
        let ban = strike(&mut state, &rule, 4 * S, Mode::Enforce).expect("third strike");
        assert_eq!((ban.strikes, ban.first_seen_ns), (3, S));
        assert_eq!(ban.expires_at_ns, 64 * S);
        assert_eq!(state.strikes, 0, "strikes start over");
        assert!(ban_bites(&ban, 63 * S, Mode::Enforce));
        assert!(!ban_bites(&ban, 64 * S, Mode::Enforce), "expired");
        // Strikes spread wider than the window never ban.
        for t in 0..10 {
            assert!(strike(&mut state, &rule, (100 + 11 * t) * S, Mode::Enforce).is_none());
        }
    }

    #[test]
    fn monitor_mode_bans_are_would_be_and_never_bite_when_enforcing() {
        let rule = BanRule {
            threshold: 1,
            window_ns: S,
            ttl_ns: 60 * S,
            ..BanRule::default()
        };
        let mut state = SourceState::default();
        let ban = strike(&mut state, &rule, S, Mode::Monitor).unwrap();
        assert_eq!(ban.flags, ban_flags::WOULD_BE);
        assert!(ban_bites(&ban, 2 * S, Mode::Monitor));
        assert!(!ban_bites(&ban, 2 * S, Mode::Enforce));
        let manual = manual_ban(S, 10 * S);
        assert!(ban_bites(&manual, 2 * S, Mode::Enforce));
        assert_eq!(manual.reason, BanReason::Manual as u8);
    }

    #[test]
    fn no_threshold_never_bans() {
        let mut state = SourceState::default();
        let rule = BanRule::default();
        for t in 0..100 {
            assert!(strike(&mut state, &rule, t * S, Mode::Enforce).is_none());
        }
    }

    #[test]
    fn ipv6_keys_are_cut_to_the_budget_prefix() {
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 1]);
        addr[15] = 7;
        let key = source_key(6, &addr, 64);
        assert_eq!(key.addr[8..], [0; 8]);
        assert_eq!(key.addr[..8], addr[..8]);
        assert_eq!(source_key(6, &addr, 56).addr[7], 0);
        assert_eq!(source_key(6, &addr, 60).addr[7], 0);
        assert_eq!(source_key(6, &addr, 63).addr[7], 0);
        assert_eq!(source_key(6, &addr, 200).prefix_len, 128);
        assert_eq!(source_key(6, &addr, 128).addr, addr);
        assert_eq!(source_key(6, &addr, 0).addr, [0; 16]);
        assert_eq!(
            source_key(6, &addr, 65).addr[8..],
            [0; 8],
            "bit 65 of the address is 0"
        );
        let mut full = [0xffu8; 16];
        assert_eq!(source_key(6, &full, 65).addr[8], 0x80);
        assert_eq!(source_key(6, &full, 127).addr[15], 0xfe);
        assert_eq!(source_key(6, &full, 1).addr[0], 0x80);
        full[1..].fill(0);
        full[0] = 0x80;
        assert_eq!(source_key(6, &[0xff; 16], 1).addr, full);
        let v4 = source_key(
            4,
            &[198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            64,
        );
        assert_eq!((v4.family, v4.prefix_len), (4, 32));
    }
}
