//! Evidence capture: which packets a capture slot wants and whether its budget lets it copy
//! them, as pure functions the capture stage runs and host tests check.

use crate::{
    abi::{CAPTURE_SNAP_MAX, CaptureControl, PacketMeta, Reason, Zone, capture_flags},
    budget::{Gcra, NANOS},
};

/// The verdict a packet got, as a capture sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged<'a> {
    pub reason: Reason,
    pub zone: Zone,
    /// The packet's parsed addresses, `None` when no IP header was read.
    pub packet: Option<&'a PacketMeta>,
}

/// Whether the slot, on at `now` (boot ns), wants the packet. Packets that are not SIP (judged
/// in no zone: other ports, other protocols, frames without a readable IP header) never are.
#[inline(always)]
pub fn wants(control: &CaptureControl, now: u64, judged: &Judged) -> bool {
    if control.expires_ns <= now || judged.zone == Zone::None {
        return false;
    }
    let wanted = if judged.reason.is_drop() {
        capture_flags::DROPS
    } else {
        capture_flags::INCLUDE_PASSED
    };
    if control.flags & wanted == 0 {
        return false;
    }
    // Passed packets are wanted whatever the reason set says (it names drop reasons).
    if judged.reason.is_drop() && control.reasons & (1u32 << (judged.reason as u32 & 31)) == 0 {
        return false;
    }
    if control.zones != 0 && control.zones & (1u8 << (judged.zone as u8 & 7)) == 0 {
        return false;
    }
    match control.src_family {
        0 => true,
        family => match judged.packet {
            Some(packet) if packet.family == family => {
                prefix_matches(&packet.src, &control.src, control.src_prefix_len)
            }
            _ => false,
        },
    }
}

/// Whether the first `len` bits of `addr` equal those of `net`.
#[inline(always)]
pub fn prefix_matches(addr: &[u8; 16], net: &[u8; 16], len: u8) -> bool {
    let len = if len > 128 { 128 } else { len as usize };
    let whole = len / 8;
    let mut i = 0;
    while i < 16 {
        if i < whole {
            if addr[i] != net[i] {
                return false;
            }
        } else if i == whole {
            let bits = len % 8;
            if bits != 0 {
                let mask = 0xffu8 << (8 - bits);
                if addr[i] & mask != net[i] & mask {
                    return false;
                }
            }
        }
        i += 1;
    }
    true
}

/// How many bytes of a `total`-byte packet the slot copies.
#[inline(always)]
pub fn copy_length(snaplen: u32, total: u64) -> usize {
    let snap = match snaplen as usize {
        0 => CAPTURE_SNAP_MAX,
        n if n > CAPTURE_SNAP_MAX => CAPTURE_SNAP_MAX,
        n => n,
    };
    if total < snap as u64 {
        total as usize
    } else {
        snap
    }
}

/// Spends `units` of a GCRA budget at `now`: the TAT after it, or `None` when they do not fit
/// (the state stays). One unit costs `interval_ns`; the budget holds `tau_ns / interval_ns + 1`
/// units (the burst). With `units` 1 this is [`Gcra::admit_on_tick`].
#[inline(always)]
pub fn spend(gcra: &Gcra, tat: u64, now: u64, units: u64, tick_ns: u64) -> Option<u64> {
    if gcra.interval_ns == 0 {
        return Some(tat);
    }
    let base = if tat > now { tat } else { now };
    // Units are at most a packet's bytes and an interval at most a second: no overflow (and no
    // 128-bit multiply, which the BPF target lacks).
    let units = if units > 1 << 20 { 1 << 20 } else { units };
    let interval = if gcra.interval_ns > NANOS {
        NANOS
    } else {
        gcra.interval_ns
    };
    let cost = units.wrapping_mul(interval);
    let limit = gcra
        .tau_ns
        .saturating_add(gcra.interval_ns)
        .saturating_add(tick_ns);
    if (base - now).saturating_add(cost) <= limit {
        Some(base.saturating_add(cost))
    } else {
        None
    }
}

/// Every reason that drops a packet, as a [`CaptureControl::reasons`] mask.
pub fn all_drop_reasons() -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < Reason::ALL.len() {
        let reason = Reason::ALL[i];
        if reason.is_drop() {
            mask |= 1 << (reason as u32);
        }
        i += 1;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::capture_flags::{DROPS, INCLUDE_PASSED};

    fn control(flags: u32) -> CaptureControl {
        CaptureControl {
            expires_ns: 100,
            reasons: 1 << Reason::NotAllowlisted as u32,
            flags,
            snaplen: 128,
            ..CaptureControl::default()
        }
    }

    fn v4(src: [u8; 4]) -> PacketMeta {
        let mut packet = PacketMeta {
            family: 4,
            ..PacketMeta::default()
        };
        packet.src[..4].copy_from_slice(&src);
        packet
    }

    #[test]
    fn reasons_zones_outcomes_and_expiry() {
        let packet = v4([198, 18, 0, 1]);
        let drop = Judged {
            reason: Reason::NotAllowlisted,
            zone: Zone::Trunk,
            packet: Some(&packet),
        };
        let c = control(DROPS);
        assert!(wants(&c, 50, &drop));
        assert!(!wants(&c, 100, &drop), "expired");
        assert!(!wants(&CaptureControl::default(), 0, &drop), "off");
        let other = Judged {
            reason: Reason::Scanner,
            ..drop
        };
        assert!(!wants(&c, 50, &other), "reason not in the set");
        let passed = Judged {
            reason: Reason::Allowlisted,
            ..drop
        };
        assert!(!wants(&c, 50, &passed));
        assert!(wants(&control(DROPS | INCLUDE_PASSED), 50, &passed));
        let not_sip = Judged {
            reason: Reason::NotSip,
            zone: Zone::None,
            packet: Some(&packet),
        };
        assert!(!wants(&control(DROPS | INCLUDE_PASSED), 50, &not_sip));
        let malformed = Judged {
            reason: Reason::Malformed,
            zone: Zone::None,
            packet: None,
        };
        let mut all = control(DROPS | INCLUDE_PASSED);
        all.reasons = all_drop_reasons();
        assert!(!wants(&all, 50, &malformed), "no zone: not SIP");
        let mut access_only = c;
        access_only.zones = 1 << Zone::Access as u8;
        assert!(!wants(&access_only, 50, &drop));
        access_only.zones |= 1 << Zone::Trunk as u8;
        assert!(wants(&access_only, 50, &drop));
    }

    #[test]
    fn source_prefixes() {
        let packet = v4([198, 18, 7, 9]);
        let drop = Judged {
            reason: Reason::NotAllowlisted,
            zone: Zone::Trunk,
            packet: Some(&packet),
        };
        let mut c = control(DROPS);
        c.src_family = 4;
        c.src[..4].copy_from_slice(&[198, 18, 0, 0]);
        c.src_prefix_len = 16;
        assert!(wants(&c, 50, &drop));
        c.src_prefix_len = 23;
        assert!(!wants(&c, 50, &drop));
        c.src_family = 6;
        c.src_prefix_len = 0;
        assert!(!wants(&c, 50, &drop), "other family");
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[2] = 0x0d;
        a[3] = 0xb9;
        let mut n = a;
        n[3] = 0xb8;
        assert!(prefix_matches(&a, &n, 31));
        assert!(!prefix_matches(&a, &n, 32));
        assert!(prefix_matches(&a, &a, 128));
        assert!(prefix_matches(&a, &[0; 16], 0));
    }

    #[test]
    fn lengths_and_budgets() {
        assert_eq!(copy_length(128, 60), 60);
        assert_eq!(copy_length(128, 600), 128);
        assert_eq!(copy_length(0, 9000), CAPTURE_SNAP_MAX);
        assert_eq!(copy_length(100_000, 9000), CAPTURE_SNAP_MAX);
        // 1000 bytes a second, 1500 burst: one 1400-byte packet, then not a second one at once.
        let bytes = Gcra::new(1000, 1500);
        let tat = spend(&bytes, 0, 1_000_000_000, 1400, 0).unwrap();
        assert_eq!(spend(&bytes, tat, 1_000_000_000, 1400, 0), None);
        assert!(spend(&bytes, tat, 1_000_000_000, 100, 0).is_some());
        assert!(spend(&bytes, tat, 3_000_000_000, 1400, 0).is_some());
        // Packets: with units 1 as the GCRA of budgets.
        let packets = Gcra::new(10, 3);
        let mut tat = 0;
        for _ in 0..3 {
            tat = spend(&packets, tat, 5_000_000_000, 1, 0).unwrap();
        }
        assert_eq!(spend(&packets, tat, 5_000_000_000, 1, 0), None);
        assert_eq!(spend(&Gcra::UNLIMITED, 7, 0, 99, 0), Some(7));
    }
}
