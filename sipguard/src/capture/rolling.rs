//! The rolling capture of drops `sipguard run` keeps in memory: the newest packets within a
//! byte bound and an age bound; the oldest go first.

use std::collections::VecDeque;

use super::record::Captured;

/// Bytes a kept packet costs beyond its data (the record and the queue's slot).
const OVERHEAD: usize = 96;

#[derive(Debug)]
pub struct RollingRing {
    max_bytes: usize,
    max_age_ns: u64,
    bytes: usize,
    packets: VecDeque<Captured>,
    /// Packets pushed out to stay within the bounds.
    pub evicted: u64,
}

impl RollingRing {
    pub fn new(max_bytes: usize, max_age_ns: u64) -> RollingRing {
        RollingRing {
            max_bytes,
            max_age_ns,
            bytes: 0,
            packets: VecDeque::new(),
            evicted: 0,
        }
    }

    fn cost(packet: &Captured) -> usize {
        packet.data.len() + OVERHEAD
    }

    pub fn push(&mut self, packet: Captured, now_ns: u64) {
        self.bytes += Self::cost(&packet);
        self.packets.push_back(packet);
        self.trim(now_ns);
    }

    /// Drops what is older than the age bound or beyond the byte bound.
    pub fn trim(&mut self, now_ns: u64) {
        while let Some(oldest) = self.packets.front() {
            let too_old = now_ns.saturating_sub(oldest.time_ns) > self.max_age_ns;
            if !too_old && self.bytes <= self.max_bytes {
                break;
            }
            self.bytes -= Self::cost(oldest);
            self.packets.pop_front();
            self.evicted += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Captured> {
        self.packets.iter()
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(time_ns: u64, len: usize) -> Captured {
        Captured {
            time_ns,
            ifindex: 1,
            packet_len: len as u32,
            reason: 6,
            zone: 1,
            outcome: 0,
            rule: 0,
            number: String::new(),
            data: vec![0; len],
        }
    }

    #[test]
    fn bounded_by_bytes_and_age() {
        let mut ring = RollingRing::new(3 * (100 + OVERHEAD), 10_000);
        for t in 0..5 {
            ring.push(packet(t, 100), t);
        }
        assert_eq!(ring.len(), 3, "byte bound");
        assert_eq!(ring.iter().next().unwrap().time_ns, 2, "oldest go first");
        assert_eq!(ring.evicted, 2);
        ring.trim(10_003);
        assert_eq!(ring.len(), 2, "age bound");
        ring.trim(1_000_000);
        assert!(ring.is_empty());
        assert_eq!(ring.bytes(), 0);
    }
}
