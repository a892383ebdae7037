//! What the SBC's own answers say about a client, written once for the egress program, the
//! controller (`sipguard strike`) and host tests.
//!
//! ```text
//!  answer (status, CSeq method)           meaning for the client (the answer's destination)
//!  401/407 to REGISTER or INVITE ........ challenge: opens a digest exchange of that method;
//!                                         a challenge while one is open is a failure
//!  403 to REGISTER or INVITE ............ refusal: a failure
//!  2xx to REGISTER ...................... success: closes the REGISTER exchange, clears the
//!                                         failures; verifies the client for its Expires
//!  1xx/2xx/3xx to INVITE ................ the call went past authentication: closes the INVITE
//!                                         exchange; a 2xx also clears the failures
//!  anything else ........................ nothing
//!  `threshold` failures within `window` . ban (reason auth_failures) for `ttl`
//! ```
//!
//! A normal digest exchange (one challenge, then success) never counts. A phone that mistypes
//! its password once collects one or two failures. svcrack collects one per guess (Kamailio
//! answers a wrong password with a new challenge) or two (a 403 after the challenge). Verified
//! sources (offices behind one address) have a grace: challenges within `grace` of the one that
//! opened the exchange do not count, so a burst of phones registering at once is no attack.

use crate::{
    abi::{Ban, BanReason, FeedbackPolicy, Mode, SipMethod, ban_flags},
    budget::{BanRule, NANOS},
};

/// What an answer means for the client it goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// 401/407 to REGISTER or INVITE: `exchange` is [`EXCHANGE_REGISTER`] or
    /// [`EXCHANGE_INVITE`].
    Challenge { exchange: usize },
    /// 403 to REGISTER or INVITE.
    Refusal,
    /// The SBC accepted the request's credentials: closes `exchange`; `clears` the failures
    /// (a final 2xx); `registered` for a 2xx to REGISTER.
    Accepted {
        exchange: usize,
        clears: bool,
        registered: bool,
    },
    /// Nothing to learn.
    Other,
}

pub const EXCHANGE_REGISTER: usize = 0;
pub const EXCHANGE_INVITE: usize = 1;

/// The meaning of an answer with `status` to a request of `method` (from its CSeq).
#[inline(always)]
pub fn classify(status: u16, method: SipMethod) -> AnswerKind {
    let exchange = match method {
        SipMethod::Register => EXCHANGE_REGISTER,
        SipMethod::Invite => EXCHANGE_INVITE,
        _ => return AnswerKind::Other,
    };
    match status {
        401 | 407 => AnswerKind::Challenge { exchange },
        403 => AnswerKind::Refusal,
        200..=299 => AnswerKind::Accepted {
            exchange,
            clears: true,
            registered: exchange == EXCHANGE_REGISTER,
        },
        // Provisional and redirect answers to an INVITE come only once it passed
        // authentication (a challenged INVITE gets its 407 and nothing else).
        100..=199 | 300..=399 if exchange == EXCHANGE_INVITE => AnswerKind::Accepted {
            exchange,
            clears: false,
            registered: false,
        },
        _ => AnswerKind::Other,
    }
}

/// Whether a challenge at `now` is a failure: another challenge of the same exchange is open
/// (`open_since_ns` != 0), and, for a source with a grace, has been open at least `grace_ns`.
#[inline(always)]
pub fn challenge_fails(open_since_ns: u64, now: u64, grace_ns: u64) -> bool {
    open_since_ns != 0 && now.saturating_sub(open_since_ns) >= grace_ns
}

/// The failures word ([`crate::abi::AuthState::failures_window`]) after one more failure at
/// `now`, and the failures that make a ban when this one completes `rule.threshold` within
/// the window (the count then starts over, as strikes do).
#[inline(always)]
pub fn count_failure(word: u64, rule: &BanRule, now: u64) -> (u64, Option<u32>) {
    let count = word as u32;
    let start = (word >> 32) as u32;
    let now_s = (now / NANOS) as u32;
    let window_s = (rule.window_ns / NANOS) as u32;
    let (start, count) = if start == 0 || now_s.saturating_sub(start - 1) > window_s {
        (now_s.saturating_add(1), 1)
    } else {
        (start, count.saturating_add(1))
    };
    if rule.threshold != 0 && count >= rule.threshold {
        (u64::from(start) << 32, Some(count))
    } else {
        ((u64::from(start) << 32) | u64::from(count), None)
    }
}

/// The ban of a source whose failures reached the threshold at `now` (a would-be ban in
/// monitor mode).
#[inline(always)]
pub fn auth_ban(rule: &BanRule, now: u64, mode: Mode, failures: u32) -> Ban {
    Ban {
        banned_at_ns: now,
        expires_at_ns: now.saturating_add(rule.ttl_ns),
        first_seen_ns: now,
        last_seen_ns: now,
        strikes: failures,
        reason: BanReason::AuthFailures as u8,
        flags: match mode {
            Mode::Monitor => ban_flags::WOULD_BE,
            Mode::Enforce => 0,
        },
        ..Ban::default()
    }
}

/// How long a 200 OK to REGISTER verifies its client: the largest Expires it names (header
/// or Contact parameter), or the policy's default when it names none, capped by the policy.
/// `None`: expires 0, the client de-registered.
#[inline(always)]
pub fn verified_lifetime_ns(
    expires_seen: bool,
    expires_s: u32,
    policy: &FeedbackPolicy,
) -> Option<u64> {
    let lifetime = if expires_seen {
        if expires_s == 0 {
            return None;
        }
        u64::from(expires_s).saturating_mul(NANOS)
    } else {
        policy.verified_default_ns
    };
    Some(if lifetime > policy.verified_max_ns {
        policy.verified_max_ns
    } else {
        lifetime
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;

    #[test]
    fn answers_are_classified_by_status_and_cseq_method() {
        use AnswerKind::*;
        assert_eq!(
            classify(401, SipMethod::Register),
            Challenge {
                exchange: EXCHANGE_REGISTER
            }
        );
        assert_eq!(
            classify(407, SipMethod::Invite),
            Challenge {
                exchange: EXCHANGE_INVITE
            }
        );
        assert_eq!(classify(403, SipMethod::Invite), Refusal);
        assert_eq!(
            classify(200, SipMethod::Register),
            Accepted {
                exchange: EXCHANGE_REGISTER,
                clears: true,
                registered: true
            }
        );
        assert_eq!(
            classify(100, SipMethod::Invite),
            Accepted {
                exchange: EXCHANGE_INVITE,
                clears: false,
                registered: false
            }
        );
        // A 100 to REGISTER says nothing; other methods never count; other failures neither.
        assert_eq!(classify(100, SipMethod::Register), Other);
        assert_eq!(classify(401, SipMethod::Options), Other);
        assert_eq!(classify(401, SipMethod::Unknown), Other);
        assert_eq!(classify(404, SipMethod::Register), Other);
        assert_eq!(classify(486, SipMethod::Invite), Other);
        assert_eq!(classify(483, SipMethod::Invite), Other);
    }

    #[test]
    fn failures_count_within_the_window_and_ban_at_the_threshold() {
        let rule = BanRule {
            threshold: 3,
            window_ns: 60 * S,
            ttl_ns: 3600 * S,
            ..BanRule::default()
        };
        let (word, ban) = count_failure(0, &rule, 10 * S);
        assert_eq!((word as u32, ban), (1, None));
        let (word, ban) = count_failure(word, &rule, 20 * S);
        assert_eq!((word as u32, ban), (2, None));
        let (word, ban) = count_failure(word, &rule, 30 * S);
        assert_eq!((word as u32, ban), (0, Some(3)), "the count starts over");
        // Beyond the window a new one starts.
        let (word, _) = count_failure(word, &rule, 40 * S);
        let (word, ban) = count_failure(word, &rule, 200 * S);
        assert_eq!((word as u32, ban), (1, None));
        // At boot second 0 the window start is still marked (start + 1).
        let (word, _) = count_failure(0, &BanRule::default(), 0);
        assert_eq!(word >> 32, 1);
        assert_eq!(
            count_failure(word, &BanRule::default(), S).1,
            None,
            "no threshold"
        );
    }

    #[test]
    fn a_digest_exchange_never_fails_and_a_second_challenge_does() {
        assert!(!challenge_fails(0, 5 * S, 0), "the first challenge opens");
        assert!(
            challenge_fails(5 * S, 5 * S, 0),
            "another while open, no grace"
        );
        assert!(
            !challenge_fails(5 * S, 6 * S, 2 * S),
            "within a verified source's grace"
        );
        assert!(challenge_fails(5 * S, 7 * S, 2 * S));
    }

    #[test]
    fn lifetimes_come_from_expires_capped_and_zero_unverifies() {
        let policy = FeedbackPolicy {
            verified_max_ns: 3600 * S,
            verified_default_ns: 600 * S,
            ..FeedbackPolicy::default()
        };
        assert_eq!(verified_lifetime_ns(true, 120, &policy), Some(120 * S));
        assert_eq!(verified_lifetime_ns(true, 7200, &policy), Some(3600 * S));
        assert_eq!(verified_lifetime_ns(false, 0, &policy), Some(600 * S));
        assert_eq!(verified_lifetime_ns(true, 0, &policy), None);
        let ban = auth_ban(
            &BanRule {
                ttl_ns: 10 * S,
                ..BanRule::default()
            },
            S,
            Mode::Monitor,
            4,
        );
        assert_eq!(ban.reason, BanReason::AuthFailures as u8);
        assert_eq!((ban.strikes, ban.expires_at_ns, ban.flags), (4, 11 * S, 1));
    }
}
