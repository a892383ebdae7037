//! xdp-filter (xdp-tools, C) as a baseline, loaded by its own CLI on an interface of one of our
//! namespaces, then run with BPF_PROG_TEST_RUN through aya like our programs.
//!
//! xdp-filter pins its maps under `/sys/fs/bpf/xdp-filter/` whatever LIBXDP_BPFFS says, shared by
//! every interface it filters. So that several configurations can coexist, and nothing of the
//! host's own xdp-filter is touched, each `load` runs in a private mount namespace (`unshare -m`)
//! with its own bpffs at /sys/fs/bpf: the pins vanish with it, the attached program and its maps
//! stay (the interface holds them) and go when the namespace (and its veth) is deleted.
//!
//! The first rule of each family is added with `xdp-filter ip`; the others are written straight
//! into its maps (a CLI call per address would take minutes for 10,000), with the value the CLI
//! wrote for the first one. Its address maps hold at most 10,000 entries per family.

use std::{
    borrow::Cow,
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::{Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{ProgramInfo, Xdp, loaded_programs},
};
use aya_obj::programs::XdpAttachType;
use sipguard_tests::netns::NetNs;

use super::{
    scenarios::XfSetup,
    sys::{attached_prog_id, output},
};

/// Capacity of xdp-filter's `filter_ipv4` / `filter_ipv6` maps (xdp-tools 1.3.1).
pub(super) const MAX_ADDRESSES: usize = 10_000;

pub(super) struct XdpFilter {
    pub program: Xdp,
    pub info: ProgramInfo,
    stats: PerCpuArray<MapData, [u64; 2]>,
}

impl XdpFilter {
    /// Loads xdp-filter natively on `iface` in `ns` with `setup`, matching `v4` and `v6` as
    /// source addresses.
    pub(super) fn load(
        ns: &NetNs,
        iface: &str,
        setup: XfSetup,
        v4: &[Ipv4Addr],
        v6: &[Ipv6Addr],
    ) -> Result<XdpFilter> {
        if v4.len() > MAX_ADDRESSES || v6.len() > MAX_ADDRESSES {
            bail!("xdp-filter holds at most {MAX_ADDRESSES} addresses per family");
        }
        let policy = match setup {
            XfSetup::DropUnmatched => "deny",
            XfSetup::PassUnmatched => "allow",
        };
        let first_v4 = v4
            .first()
            .map(std::string::ToString::to_string)
            .unwrap_or_default();
        let first_v6 = v6
            .first()
            .map(std::string::ToString::to_string)
            .unwrap_or_default();
        const SCRIPT: &str = r#"set -e
mount -t bpf bpf /sys/fs/bpf
nsenter --net="/run/netns/$1" xdp-filter load "$2" -m native -p "$3" -f ipv4,ipv6
if [ -n "$4" ]; then nsenter --net="/run/netns/$1" xdp-filter ip "$4" -m src; fi
if [ -n "$5" ]; then nsenter --net="/run/netns/$1" xdp-filter ip "$5" -m src; fi
"#;
        output(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
                .args(["sh", ns.name(), iface, policy, &first_v4, &first_v6]),
        )
        .context("xdp-filter load (xdp-tools)")?;

        let id = attached_prog_id(ns, iface)?;
        let info = program_info(id)?;
        let name = info.name_as_str().unwrap_or("").to_string();
        if !name.starts_with("xdpfilt_") {
            bail!("xdp-filter attached {name:?}, not one of its xdpfilt_* programs");
        }
        let mut maps = std::collections::HashMap::new();
        for map_id in info.map_ids()?.unwrap_or_default() {
            let map_name = MapInfo::from_id(map_id)?
                .name_as_str()
                .unwrap_or("")
                .to_string();
            maps.insert(map_name, map_id);
        }
        let open = |name: &str| -> Result<Map> {
            let id = maps
                .get(name)
                .with_context(|| format!("xdp-filter has no map {name}"))?;
            Ok(Map::from_map_data(MapData::from_id(*id)?)?)
        };
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        if let Some(first) = v4.first() {
            let mut map: PerCpuHashMap<MapData, [u8; 4], u64> = open("filter_ipv4")?.try_into()?;
            let flags = rule_flags(map.get(&first.octets(), 0)?)?;
            for addr in &v4[1..] {
                map.insert(addr.octets(), PerCpuValues::try_from(vec![flags; cpus])?, 0)?;
            }
        }
        if let Some(first) = v6.first() {
            let mut map: PerCpuHashMap<MapData, [u8; 16], u64> = open("filter_ipv6")?.try_into()?;
            let flags = rule_flags(map.get(&first.octets(), 0)?)?;
            for addr in &v6[1..] {
                map.insert(addr.octets(), PerCpuValues::try_from(vec![flags; cpus])?, 0)?;
            }
        }
        let stats = open("xdp_stats_map")?.try_into()?;
        let program = Xdp::from_program_info(
            program_info(id)?,
            Cow::Owned(name),
            XdpAttachType::Interface,
        )?;
        Ok(XdpFilter {
            program,
            info,
            stats,
        })
    }

    /// Packets xdp-filter ended with `action` (XDP_DROP, XDP_PASS), all CPUs.
    pub(super) fn packets(&self, action: u32) -> Result<u64> {
        Ok(self.stats.get(&action, 0)?.iter().map(|rec| rec[0]).sum())
    }
}

/// The match flags the CLI stored for a source-address rule (bit 0: source); the upper bits of
/// the value are xdp-filter's hit counter.
fn rule_flags(values: PerCpuValues<u64>) -> Result<u64> {
    let flags = values.iter().map(|v| v & 0x3f).max().unwrap_or(0);
    if flags == 0 {
        bail!("xdp-filter stored no match flags for its first rule");
    }
    Ok(flags)
}

fn program_info(id: u32) -> Result<ProgramInfo> {
    for info in loaded_programs() {
        let info = info?;
        if info.id() == id {
            return Ok(info);
        }
    }
    bail!("no BPF program with id {id}")
}
