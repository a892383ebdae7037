//! A policy compiled into what the XDP program reads: port zones and prefix sets.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sipguard_common::{
    abi::{
        self, CLASS_NAME_LEN, ClassLimits, FragmentPolicy, Mode, Origin, PORT_SLOTS,
        PREFILTER_CHUNK_WORDS, PREFILTER_CHUNKS, PrefilterChunk, RuleValue, Zone, access_gate,
        feedback_flags, policy_flags, prefilter_position,
    },
    budget::{BanRule, Gcra},
    parse::Transport,
};

use super::{
    AccessGate, BanSettings, Budget, DEFAULT_NEW_SOURCES, DEFAULT_UNVERIFIED_METHODS,
    EventSettings, Policy, Ports,
    sip_tables::{SipIds, SipTables, ZoneUse, compile_sip},
};

/// A prefix as the kernel tries hold it: length and network-order address bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prefix {
    V4 { len: u8, addr: [u8; 4] },
    V6 { len: u8, addr: [u8; 16] },
}

impl From<IpNet> for Prefix {
    fn from(net: IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(net) => Prefix::V4 {
                len: net.prefix_len(),
                addr: net.network().octets(),
            },
            IpNet::V6(net) => Prefix::V6 {
                len: net.prefix_len(),
                addr: net.network().octets(),
            },
        }
    }
}

impl Prefix {
    /// An IPv4 /32: kept in the host hash map, not in the trie.
    pub fn is_v4_host(&self) -> bool {
        matches!(self, Prefix::V4 { len: 32, .. })
    }

    pub fn net(&self) -> IpNet {
        match *self {
            Prefix::V4 { len, addr } => IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(addr), len).expect("kernel prefix lengths are <= 32"),
            ),
            Prefix::V6 { len, addr } => IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(addr), len).expect("kernel prefix lengths are <= 128"),
            ),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.net().contains(&addr)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.net().fmt(f)
    }
}

/// Everything one policy generation holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Tables {
    pub mode: Mode,
    pub fragments: FragmentPolicy,
    pub ipv6_prefix: u8,
    /// Zone of every UDP, TCP and SCTP destination port (index = port).
    pub udp_zone: Vec<u8>,
    pub tcp_zone: Vec<u8>,
    pub sctp_zone: Vec<u8>,
    /// `policy_flags::SIP_*`: zones whose admitted packets go through the SIP stage.
    pub sip_flags: u8,
    /// Budget classes by id; id 0 is "no budget" and stays empty.
    pub classes: Vec<(String, Budget)>,
    /// Class id of unknown sources in the access zone (0 without an access zone).
    pub access_class: u16,
    pub new_sources: Budget,
    pub bans: BanSettings,
    pub events: EventSettings,
    pub allow: BTreeMap<Prefix, RuleValue>,
    pub deny: BTreeMap<Prefix, RuleValue>,
    /// Method budgets, scanner signatures, destination rules.
    pub sip: SipTables,
    /// What the egress program does with the SBC's answers.
    pub feedback: abi::FeedbackPolicy,
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tables")
            .field("mode", &self.mode)
            .field("fragments", &self.fragments)
            .field("classes", &self.classes)
            .field("allow", &self.allow.len())
            .field("deny", &self.deny.len())
            .finish_non_exhaustive()
    }
}

impl Tables {
    /// Compiles `policy`, running in `mode` unless the policy sets one, plus the runtime entries
    /// added by `sipguard allow|deny add` (a policy entry for the same prefix takes precedence).
    /// Runtime entries name their class by name here; ids are assigned afresh.
    pub fn compile(
        policy: &Policy,
        running_mode: Mode,
        runtime_allow: &BTreeMap<Prefix, (RuleValue, Option<String>)>,
        runtime_deny: &BTreeMap<Prefix, RuleValue>,
        now_unix: u32,
        sip_ids: &SipIds,
    ) -> Tables {
        let mut udp_zone = vec![Zone::None as u8; PORT_SLOTS];
        let mut tcp_zone = vec![Zone::None as u8; PORT_SLOTS];
        let mut sctp_zone = vec![Zone::None as u8; PORT_SLOTS];
        let mut mark = |ports: &Ports, zone: Zone| {
            for (table, list) in [
                (&mut udp_zone, &ports.udp),
                (&mut tcp_zone, &ports.tcp),
                (&mut sctp_zone, &ports.sctp),
            ] {
                for port in list {
                    table[usize::from(*port)] = zone as u8;
                }
            }
        };
        mark(&policy.trunk, Zone::Trunk);
        let mut sip_flags = 0;
        if policy.trunk.count_methods {
            sip_flags |= policy_flags::SIP_TRUNK;
        }
        if let Some(access) = &policy.access {
            mark(&access.ports, Zone::Access);
            if access.ports.count_methods {
                sip_flags |= policy_flags::SIP_ACCESS;
            }
        }
        // Slot 0 is "no budget"; named classes follow in name order.
        let mut classes = vec![(String::new(), Budget { rate: 0, burst: 0 })];
        classes.extend(
            policy
                .classes
                .iter()
                .map(|(name, budget)| (name.clone(), *budget)),
        );
        let class_id = |name: &Option<String>| -> u16 {
            name.as_ref()
                .and_then(|name| classes.iter().position(|(n, _)| n == name))
                .map_or(0, |id| id as u16)
        };
        let mut allow: BTreeMap<Prefix, RuleValue> = runtime_allow
            .iter()
            .map(|(prefix, (value, class))| {
                (
                    *prefix,
                    RuleValue {
                        class: class_id(class),
                        ..*value
                    },
                )
            })
            .collect();
        let mut deny = runtime_deny.clone();
        let policy_value = |class: u16| RuleValue {
            class,
            origin: Origin::Policy as u8,
            _reserved: 0,
            added_at_unix: now_unix,
        };
        for rule in &policy.allow {
            allow.insert(Prefix::from(rule.net), policy_value(class_id(&rule.class)));
        }
        for rule in &policy.deny {
            deny.insert(Prefix::from(rule.net), policy_value(0));
        }
        let access_class = policy
            .access
            .as_ref()
            .map_or(0, |access| class_id(&Some(access.class.clone())));
        let class_names: Vec<String> = classes.iter().map(|(name, _)| name.clone()).collect();
        // Method budgets need the SIP stage where sources of a class that has them arrive:
        // allowlisted sources (either zone) and the access zone's unknown sources.
        let budgeted = |class: Option<&String>| {
            class.is_some_and(|class| policy.sip.method_budgets.contains_key(class))
        };
        let listed_budgeted = policy
            .allow
            .iter()
            .any(|rule| budgeted(rule.class.as_ref()))
            || runtime_allow
                .values()
                .any(|(_, class)| budgeted(class.as_ref()));
        let sip = compile_sip(
            &policy.sip,
            &class_names,
            [
                ZoneUse {
                    zone: Zone::Trunk,
                    has_ports: !policy.trunk.is_empty(),
                    method_budgets: listed_budgeted,
                },
                ZoneUse {
                    zone: Zone::Access,
                    has_ports: policy.access.as_ref().is_some_and(|a| !a.ports.is_empty()),
                    method_budgets: listed_budgeted
                        || budgeted(policy.access.as_ref().map(|a| &a.class))
                        || budgeted(policy.feedback.verified_class.as_ref()),
                },
            ],
            sip_ids,
        );
        sip_flags |= sip.flags;
        let feedback = compile_feedback(
            policy,
            |name| class_id(&Some(name.to_string())),
            access_class,
        );
        if feedback.flags & feedback_flags::VERIFIED != 0 {
            sip_flags |= policy_flags::VERIFIED;
        }
        Tables {
            mode: policy.mode.unwrap_or(running_mode),
            fragments: policy.fragments,
            ipv6_prefix: policy.ipv6_prefix,
            udp_zone,
            tcp_zone,
            sctp_zone,
            sip_flags,
            classes,
            access_class,
            new_sources: policy
                .access
                .as_ref()
                .map_or(DEFAULT_NEW_SOURCES, |a| a.new_sources),
            bans: policy.bans,
            events: policy.events,
            allow,
            deny,
            sip,
            feedback,
        }
    }

    /// The generation's `SG_POLICY` entry. `cpus` splits the new-source budget per CPU.
    pub fn policy_value(&self, header: abi::PolicyHeader, cpus: u64) -> Box<abi::Policy> {
        let mut value = zeroed_policy();
        value.header = header;
        value.header.mode = self.mode as u8;
        value.header.fragments = self.fragments as u8;
        value.header.ipv6_budget_prefix = self.ipv6_prefix;
        value.header.flags = deny_flags(&self.deny) | self.sip_flags;
        value.header.access_class = self.access_class;
        value.header.new_sources =
            Gcra::new(self.new_sources.rate.into(), self.new_sources.burst.into()).split(cpus);
        value.header.new_sources_rate = self.new_sources.rate;
        value.header.new_sources_burst = self.new_sources.burst;
        let per_source = self.events.per_source;
        let total = self.events.total;
        value.header.events = Gcra::new(per_source.rate.into(), per_source.burst.into());
        value.header.events_global = Gcra::new(total.rate.into(), total.burst.into()).split(cpus);
        value.header.events_rate = per_source.rate;
        value.header.events_burst = per_source.burst;
        value.header.events_global_rate = total.rate;
        value.header.tick_ns = kernel_tick_ns();
        value.header.ban = BanRule {
            threshold: self.bans.threshold,
            _reserved: 0,
            window_ns: duration_ns(self.bans.window),
            ttl_ns: duration_ns(self.bans.ttl),
        };
        for (slot, (name, budget)) in value.classes.iter_mut().zip(&self.classes).skip(1) {
            *slot = class_limits(name, *budget);
        }
        for (slot, budgets) in value.class_methods.iter_mut().zip(&self.sip.class_methods) {
            *slot = *budgets;
        }
        value.sip = self.sip.sip;
        value.feedback = self.feedback;
        value.udp_zone.copy_from_slice(&self.udp_zone);
        value.tcp_zone.copy_from_slice(&self.tcp_zone);
        value.sctp_zone.copy_from_slice(&self.sctp_zone);
        value
    }

    /// SIP ports of a transport in a zone.
    pub fn ports(&self, transport: Transport, zone: Zone) -> Vec<u16> {
        ports_in(self.zone_table(transport), zone)
    }

    pub fn zone_table(&self, transport: Transport) -> &[u8] {
        match transport {
            Transport::Udp => &self.udp_zone,
            Transport::Tcp => &self.tcp_zone,
            Transport::Sctp => &self.sctp_zone,
        }
    }
}

/// The egress program's settings: on only where there is an access zone (the trunk admits only
/// allowlisted peers, which are never banned automatically).
fn compile_feedback(
    policy: &Policy,
    class_id: impl Fn(&str) -> u16,
    access_class: u16,
) -> abi::FeedbackPolicy {
    let feedback = &policy.feedback;
    let access = policy.access.as_ref().is_some_and(|a| !a.ports.is_empty());
    let mut flags = 0;
    if access && feedback.auth_threshold > 0 {
        flags |= feedback_flags::AUTH_FAILURES;
    }
    if access && feedback.verified {
        flags |= feedback_flags::VERIFIED;
    }
    abi::FeedbackPolicy {
        auth: BanRule {
            threshold: feedback.auth_threshold,
            _reserved: 0,
            window_ns: duration_ns(feedback.auth_window),
            ttl_ns: duration_ns(feedback.auth_ttl),
        },
        grace_ns: duration_ns(feedback.auth_grace),
        verified_max_ns: duration_ns(feedback.verified_max_lifetime),
        verified_default_ns: duration_ns(feedback.verified_default_lifetime),
        verified_class: feedback
            .verified_class
            .as_deref()
            .map_or(access_class, class_id),
        flags,
        gate: match policy.access.as_ref().map(|access| access.gate) {
            Some(AccessGate::Always) if access => access_gate::ALWAYS,
            Some(AccessGate::UnderAttack) if access => access_gate::ON_ATTACK,
            _ => 0,
        },
        unverified_methods: policy
            .access
            .as_ref()
            .map_or(DEFAULT_UNVERIFIED_METHODS, |access| {
                access.unverified_methods
            }),
    }
}

/// The IPv4 prefilter of a generation's list (`SG_PREFILTER`): one bit per /24 that a
/// prefix touches.
pub fn prefilter<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>) -> Vec<Box<PrefilterChunk>> {
    let mut chunks: Vec<Box<PrefilterChunk>> = (0..PREFILTER_CHUNKS)
        .map(|_| empty_prefilter_chunk())
        .collect();
    for prefix in prefixes {
        mark_prefilter(&mut chunks, prefix);
    }
    chunks
}

/// A zeroed chunk made on the heap (32 KiB: never on the stack, even unoptimized).
fn empty_prefilter_chunk() -> Box<PrefilterChunk> {
    vec![0u64; PREFILTER_CHUNK_WORDS]
        .into_boxed_slice()
        .try_into()
        .expect("PREFILTER_CHUNK_WORDS words")
}

/// Sets the bits of the /24s an IPv4 prefix touches (IPv6 prefixes have no prefilter).
pub fn mark_prefilter(chunks: &mut [Box<PrefilterChunk>], prefix: &Prefix) {
    let Prefix::V4 { len, addr } = *prefix else {
        return;
    };
    let first = u32::from_be_bytes(addr) >> 8;
    let count = 1u64 << 24u32.saturating_sub(u32::from(len));
    for slash24 in u64::from(first)..u64::from(first) + count {
        let (chunk, word, bit) = prefilter_position(((slash24 as u32) << 8).to_be_bytes());
        if let Some(chunk) = chunks.get_mut(chunk as usize) {
            chunk[word] |= 1 << bit;
        }
    }
}

/// `policy_flags` for the families whose denylist has entries.
pub fn deny_flags(deny: &BTreeMap<Prefix, RuleValue>) -> u8 {
    deny.keys().fold(0, |flags, prefix| {
        flags
            | match prefix {
                Prefix::V4 { .. } => policy_flags::DENY4,
                Prefix::V6 { .. } => policy_flags::DENY6,
            }
    })
}

/// Ports of a zone table that belong to `zone`.
pub fn ports_in(table: &[u8], zone: Zone) -> Vec<u16> {
    (0..table.len())
        .filter(|port| table[*port] == zone as u8)
        .map(|port| port as u16)
        .collect()
}

/// The kernel's tick (1/HZ): the resolution of the coarse clocks, which tick with jiffies, and
/// of the data plane's clock.
pub fn kernel_tick_ns() -> u32 {
    let mut resolution = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec.
    let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut resolution) } == 0;
    match u32::try_from(resolution.tv_nsec) {
        // HZ lies between 100 and 1000 on every kernel config.
        Ok(tick) if ok && resolution.tv_sec == 0 && (1_000_000..=10_000_000).contains(&tick) => {
            tick
        }
        _ => abi::DEFAULT_TICK_NS,
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A class slot of `SG_POLICY`.
pub fn class_limits(name: &str, budget: Budget) -> ClassLimits {
    let mut limits = ClassLimits {
        gcra: Gcra::new(budget.rate.into(), budget.burst.into()),
        rate: budget.rate,
        burst: budget.burst,
        name: [0; CLASS_NAME_LEN],
    };
    for (slot, byte) in limits
        .name
        .iter_mut()
        .zip(name.bytes().take(CLASS_NAME_LEN - 1))
    {
        *slot = byte;
    }
    limits
}

/// The name in a class slot.
pub fn class_name(limits: &ClassLimits) -> String {
    let end = limits
        .name
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(CLASS_NAME_LEN);
    String::from_utf8_lossy(&limits.name[..end]).into_owned()
}

/// A zeroed `SG_POLICY` value on the heap (it is 128 KiB).
pub fn zeroed_policy() -> Box<abi::Policy> {
    // SAFETY: abi::Policy is plain integers; all-zero is a valid value.
    unsafe { Box::<abi::Policy>::new_zeroed().assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn prefixes_round_trip_through_kernel_form() {
        for text in [
            "198.51.100.0/24",
            "192.0.2.7/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::1/128",
        ] {
            let net: IpNet = text.parse().unwrap();
            assert_eq!(Prefix::from(net).net(), net);
            assert_eq!(Prefix::from(net).to_string(), text);
        }
        assert_eq!(
            Prefix::from("198.51.100.0/24".parse::<IpNet>().unwrap()),
            Prefix::V4 {
                len: 24,
                addr: [198, 51, 100, 0]
            }
        );
    }

    #[test]
    fn the_prefilter_marks_every_slash24_a_prefix_touches() {
        let prefix = |text: &str| Prefix::from(text.parse::<IpNet>().unwrap());
        let is_set = |chunks: &[Box<PrefilterChunk>], addr: [u8; 4]| {
            let (chunk, word, bit) = prefilter_position(addr);
            chunks[chunk as usize][word] & (1 << bit) != 0
        };
        let prefixes = [
            prefix("198.51.100.7/32"),
            prefix("10.0.0.0/8"),
            prefix("192.0.2.16/28"),
            prefix("2001:db8::/32"),
        ];
        let chunks = prefilter(&prefixes);
        assert!(is_set(&chunks, [198, 51, 100, 200]), "the /24 of a host");
        assert!(!is_set(&chunks, [198, 51, 101, 7]));
        assert!(is_set(&chunks, [10, 0, 0, 1]) && is_set(&chunks, [10, 255, 255, 255]));
        assert!(!is_set(&chunks, [11, 0, 0, 0]) && !is_set(&chunks, [9, 255, 255, 255]));
        assert!(is_set(&chunks, [192, 0, 2, 1]), "a /28 marks its /24");
        let bits: u32 = chunks
            .iter()
            .flat_map(|c| c.iter())
            .map(|w| w.count_ones())
            .sum();
        assert_eq!(bits, 1 + 65_536 + 1, "IPv6 prefixes mark nothing");
        let everything = prefilter(&[prefix("0.0.0.0/0")]);
        assert!(everything.iter().all(|c| c.iter().all(|w| *w == u64::MAX)));
    }

    #[test]
    fn compile_marks_zones_assigns_classes_and_merges_runtime_entries() {
        let policy = Policy::parse(
            "[trunk]\nudp = [5060, 5080]\ntcp = [5061]\n[access]\nudp = [5070]\n\
             [classes]\ncarrier = { rate = 100, burst = 200 }\n\
             [[allow]]\nclass = \"carrier\"\ncidrs = [\"198.51.100.0/24\"]\n",
            "p.toml",
        )
        .unwrap();
        let runtime_prefix = Prefix::from("192.0.2.9/32".parse::<IpNet>().unwrap());
        let shared = Prefix::from("198.51.100.0/24".parse::<IpNet>().unwrap());
        let runtime_value = RuleValue {
            origin: Origin::Runtime as u8,
            added_at_unix: 5,
            ..Default::default()
        };
        let runtime: BTreeMap<_, _> = [
            (runtime_prefix, (runtime_value, Some("carrier".to_string()))),
            (shared, (runtime_value, None)),
        ]
        .into();
        let tables = Tables::compile(
            &policy,
            Mode::Monitor,
            &runtime,
            &BTreeMap::new(),
            100,
            &SipIds::default(),
        );
        assert_eq!(
            tables.mode,
            Mode::Monitor,
            "a policy without mode keeps the running mode"
        );
        assert_eq!(tables.ports(Transport::Udp, Zone::Trunk), [5060, 5080]);
        assert_eq!(tables.ports(Transport::Tcp, Zone::Trunk), [5061]);
        assert_eq!(tables.ports(Transport::Udp, Zone::Access), [5070]);
        let names: Vec<&str> = tables.classes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["", "access-default", "carrier"]);
        assert_eq!(tables.access_class, 1);
        assert_eq!(
            tables.allow[&runtime_prefix].class, 2,
            "runtime entries keep their class by name"
        );
        assert_eq!(tables.allow[&runtime_prefix].origin, Origin::Runtime as u8);
        assert_eq!(
            tables.allow[&shared].origin,
            Origin::Policy as u8,
            "policy wins over runtime"
        );
        assert_eq!(tables.allow[&shared].class, 2);

        let value = tables.policy_value(zeroed_policy().header, 2);
        assert_eq!(value.header.mode, Mode::Monitor as u8);
        assert_eq!(value.header.access_class, 1);
        assert_eq!(value.header.ipv6_budget_prefix, 64);
        assert_eq!(value.udp_zone[5080], Zone::Trunk as u8);
        assert_eq!(value.udp_zone[5070], Zone::Access as u8);
        assert_eq!(value.tcp_zone[5061], Zone::Trunk as u8);
        assert_eq!(class_name(&value.classes[2]), "carrier");
        assert_eq!(value.classes[2].gcra, Gcra::new(100, 200));
        assert_eq!(
            value.classes[0],
            ClassLimits::default(),
            "slot 0 is no budget"
        );
        // 200 new sources/s over 2 CPUs: 100/s each.
        assert_eq!(value.header.new_sources.interval_ns, 10_000_000);
        assert_eq!(value.header.ban.threshold, 100);
        assert_eq!(value.header.ban.ttl_ns, 900_000_000_000);
    }
}
