//! `[trunk]` and `[access]`: which ports carry SIP, and how sources on no list are admitted.

use toml::Spanned;

use super::{
    ParseContext,
    doc::{AccessDoc, PortsDoc},
};
use sipguard_common::abi::SipMethod;

use crate::policy::{
    Access, AccessGate, DEFAULT_ACCESS_CLASS, DEFAULT_NEW_SOURCES, DEFAULT_TCP_PORTS,
    DEFAULT_UDP_PORTS, DEFAULT_UNVERIFIED_METHODS, Ports,
};

impl ParseContext<'_> {
    /// `[trunk]` and `[access]`. With neither, SIP's usual ports form the trunk zone; naming
    /// either zone means the file lists every port itself.
    pub(super) fn read_zones(
        &mut self,
        trunk: Option<&PortsDoc>,
        access: Option<&AccessDoc>,
    ) -> (Ports, Option<Access>) {
        if trunk.is_none() && access.is_none() {
            let default_trunk = Ports {
                udp: DEFAULT_UDP_PORTS.to_vec(),
                tcp: DEFAULT_TCP_PORTS.to_vec(),
                sctp: Vec::new(),
                count_methods: false,
            };
            return (default_trunk, None);
        }
        let trunk = trunk.map_or_else(Ports::default, |doc| {
            self.read_ports(&doc.udp, &doc.tcp, &doc.sctp, doc.count_methods)
        });
        let access = access.map(|doc| self.read_access(doc, &trunk));
        (trunk, access)
    }

    /// `[access]`: its ports, the class of each unknown source, and the budget for new sources.
    fn read_access(&mut self, doc: &AccessDoc, trunk: &Ports) -> Access {
        let ports = self.read_ports(&doc.udp, &doc.tcp, &doc.sctp, doc.count_methods);
        self.check_ports_shared_with_trunk(doc, trunk);
        let class = self.read_access_class(doc.class.as_ref());
        let new_sources = doc
            .new_sources
            .as_ref()
            .map_or(DEFAULT_NEW_SOURCES, |budget| {
                self.read_budget("new_sources", budget)
                    .unwrap_or(DEFAULT_NEW_SOURCES)
            });
        let gate = self.read_gate(doc.unverified.as_ref());
        let unverified_methods = self.read_unverified_methods(doc.unverified_methods.as_ref());
        Access {
            ports,
            class,
            new_sources,
            gate,
            unverified_methods,
        }
    }

    /// A shut gate admits unknown sources once the SBC accepted their REGISTER: without
    /// `[verified]` no phone could ever call.
    pub(super) fn check_gate_has_verified(
        &mut self,
        doc: Option<&AccessDoc>,
        access: Option<&Access>,
        feedback: &crate::policy::Feedback,
    ) {
        let (Some(doc), Some(access)) = (doc, access) else {
            return;
        };
        if access.gate != AccessGate::Open
            && !feedback.verified
            && let Some(gate) = &doc.unverified
        {
            self.report_at(
                gate.span(),
                "unverified = \"under-attack\" or \"always\" needs [verified] on: only a 200 OK \
                 to a REGISTER lets a phone past the gate",
            );
        }
    }

    fn read_gate(&mut self, gate: Option<&Spanned<String>>) -> AccessGate {
        let Some(gate) = gate else {
            return AccessGate::Open;
        };
        match gate.get_ref().as_str() {
            "open" => AccessGate::Open,
            "under-attack" => AccessGate::UnderAttack,
            "always" => AccessGate::Always,
            other => {
                self.report_at(
                    gate.span(),
                    format!(
                        "unverified = \"{other}\": one of \"open\", \"under-attack\", \"always\""
                    ),
                );
                AccessGate::Open
            }
        }
    }

    /// Method names (`REGISTER`, `OPTIONS`...) as bits; REGISTER must be among them.
    fn read_unverified_methods(&mut self, methods: Option<&Spanned<Vec<String>>>) -> u16 {
        let Some(methods) = methods else {
            return DEFAULT_UNVERIFIED_METHODS;
        };
        let mut bits = 0u16;
        for name in methods.get_ref() {
            let found = SipMethod::ALL.iter().find(|method| {
                !matches!(method, SipMethod::Unknown | SipMethod::Response)
                    && method.token().eq_ignore_ascii_case(name)
            });
            match found {
                Some(method) => bits |= 1 << (*method as u16),
                None => self.report_at(
                    methods.span(),
                    format!("unverified_methods: '{name}' is not a SIP request method"),
                ),
            }
        }
        if bits != 0 && bits & DEFAULT_UNVERIFIED_METHODS == 0 {
            self.report_at(
                methods.span(),
                "unverified_methods must include REGISTER: unverified sources could never register",
            );
        }
        bits | DEFAULT_UNVERIFIED_METHODS
    }

    fn read_ports(
        &mut self,
        udp: &[Spanned<u16>],
        tcp: &[Spanned<u16>],
        sctp: &[Spanned<u16>],
        count_methods: bool,
    ) -> Ports {
        Ports {
            udp: self.check_ports("udp", udp),
            tcp: self.check_ports("tcp", tcp),
            sctp: self.check_ports("sctp", sctp),
            count_methods,
        }
    }

    /// Zero ports are dropped after reporting them; the rest come back sorted and unique.
    fn check_ports(&mut self, transport: &str, ports: &[Spanned<u16>]) -> Vec<u16> {
        let mut checked = Vec::with_capacity(ports.len());
        for port in ports {
            if *port.get_ref() == 0 {
                self.report_at(port.span(), format!("{transport} port 0 is not a port"));
            } else {
                checked.push(*port.get_ref());
            }
        }
        checked.sort_unstable();
        checked.dedup();
        checked
    }

    /// The kernel looks a port up in one zone only, so a port cannot belong to both.
    fn check_ports_shared_with_trunk(&mut self, access: &AccessDoc, trunk: &Ports) {
        for (transport, access_ports, trunk_ports) in [
            ("udp", &access.udp, &trunk.udp),
            ("tcp", &access.tcp, &trunk.tcp),
            ("sctp", &access.sctp, &trunk.sctp),
        ] {
            for port in access_ports
                .iter()
                .filter(|port| trunk_ports.contains(port.get_ref()))
            {
                self.report_at(
                    port.span(),
                    format!(
                        "{transport} port {} is in both the trunk and the access zone",
                        port.get_ref()
                    ),
                );
            }
        }
    }

    /// The class the access zone names, or the built-in one, which is then added to the table.
    fn read_access_class(&mut self, class: Option<&Spanned<String>>) -> String {
        match class {
            Some(class) => {
                self.check_class_is_defined(class);
                class.get_ref().clone()
            }
            None => {
                let (name, budget) = DEFAULT_ACCESS_CLASS;
                self.classes.entry(name.to_string()).or_insert(budget);
                name.to_string()
            }
        }
    }
}
