//! Writes captured packets as pcapng (pcap-file): one section, one interface description per
//! interface (named, nanosecond timestamps, Ethernet), an enhanced packet block per packet with
//! the verdict as its comment. tshark shows it as `frame.comment`.

use std::{borrow::Cow, collections::HashMap, io::Write, time::Duration};

use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};
use sipguard_common::abi::CAPTURE_SNAP_MAX;

use super::record::Captured;
use crate::{sip_stats::NamesById, time::Clock};

pub struct EvidenceWriter<W: Write> {
    writer: PcapNgWriter<W>,
    /// Interface label to its description's id.
    interfaces: HashMap<String, u32>,
    clock: Clock,
    signatures: NamesById,
    rules: NamesById,
    written: u64,
}

impl<W: Write> EvidenceWriter<W> {
    /// Writes the section header. `names`: signature and rule names by id.
    pub fn new(out: W, clock: Clock, names: (NamesById, NamesById)) -> anyhow::Result<Self> {
        Ok(EvidenceWriter {
            writer: PcapNgWriter::new(out)?,
            interfaces: HashMap::new(),
            clock,
            signatures: names.0,
            rules: names.1,
            written: 0,
        })
    }

    fn interface(&mut self, label: &str, snaplen: u32) -> anyhow::Result<u32> {
        if let Some(id) = self.interfaces.get(label) {
            return Ok(*id);
        }
        let id = self.interfaces.len() as u32;
        self.writer.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(label.to_string())),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed("sipguard XDP ingress")),
                // Nanoseconds (10^-9): the timestamps below are written in ns.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })?;
        self.interfaces.insert(label.to_string(), id);
        Ok(id)
    }

    /// Writes one packet of interface `label`.
    pub fn write(&mut self, label: &str, packet: &Captured) -> anyhow::Result<()> {
        let id = self.interface(label, CAPTURE_SNAP_MAX as u32)?;
        let unix_ns = self.clock.unix_ns(packet.time_ns).max(0) as u64;
        let comment = packet.comment(&self.signatures, &self.rules);
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id: id,
            timestamp: Duration::from_nanos(unix_ns),
            original_len: packet.packet_len,
            data: Cow::Borrowed(&packet.data),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        })?;
        self.written += 1;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}
