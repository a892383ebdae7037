//! `[[allow]]` and `[[deny]]`: inline CIDRs, list files, URLs and hostnames (allow only; checked
//! here without any network, fetched by `crate::lists`), then the checks across both lists, and
//! `[lists]`, the settings of URLs and hostnames.

use std::{collections::HashMap, fs, path::Path, time::Duration};

use ipnet::IpNet;
use sipguard_common::abi::MAX_PREFIXES;
use toml::Spanned;

use super::{
    ParseContext,
    check::Checker,
    doc::{DurationDoc, ListDoc, RemoteListsDoc},
    settings::read_duration,
};
use crate::policy::{
    Location, RemoteKind, RemoteSettings, RemoteSource, Rule, parse_net,
    remote::{JsonPath, MIN_REFRESH, check_hostname, check_url},
};

/// Which list a `[[allow]]`/`[[deny]]` entry belongs to.
#[derive(Clone, Copy)]
pub(super) enum ListKind {
    Allow,
    Deny,
}

impl ListKind {
    /// As written in the policy; also names unnamed groups (`allow-1`, `deny-2`).
    fn name(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Deny => "deny",
        }
    }
}

/// The `[[allow]]`/`[[deny]]` entry being read: each of its rules carries its name and class.
struct Group {
    name: String,
    class: Option<String>,
}

impl Group {
    fn rule(&self, net: IpNet, file: &Path, line: usize) -> Rule {
        Rule {
            net,
            group: self.name.clone(),
            class: self.class.clone(),
            at: Location {
                file: file.to_path_buf(),
                line,
            },
        }
    }
}

impl ParseContext<'_> {
    /// `[[allow]]` or `[[deny]]` entries: inline CIDRs first, then list files, entry by entry;
    /// and the URLs and hostnames of allow entries.
    pub(super) fn read_lists(
        &mut self,
        kind: ListKind,
        lists: &[ListDoc],
        settings: &RemoteSettings,
    ) -> (Vec<Rule>, Vec<RemoteSource>) {
        let mut rules = Vec::new();
        let mut remote = Vec::new();
        for (index, list) in lists.iter().enumerate() {
            let group = Group {
                name: list
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", kind.name(), index + 1)),
                class: list
                    .class
                    .as_ref()
                    .and_then(|class| self.read_list_class(kind, class)),
            };
            self.read_inline_cidrs(&group, &list.cidrs, &mut rules);
            self.read_list_files(&group, &list.files, &mut rules);
            match kind {
                ListKind::Allow => self.read_remote(&group, list, settings, &mut remote),
                ListKind::Deny => self.refuse_remote(list),
            }
        }
        (rules, remote)
    }

    /// `[lists]`: what it leaves out keeps its default.
    pub(super) fn read_remote_settings(&mut self, doc: Option<&RemoteListsDoc>) -> RemoteSettings {
        let mut settings = RemoteSettings::default();
        let Some(doc) = doc else {
            return settings;
        };
        if let Some(refresh) = self.read_refresh(doc.refresh.as_ref()) {
            settings.refresh = refresh;
        }
        if let Some(share) = self.read_max_shrink(doc.max_shrink.as_ref()) {
            settings.max_shrink = share;
        }
        if let Some(timeout) = &doc.timeout {
            match read_duration(timeout.get_ref()) {
                Ok(duration) if !duration.is_zero() => settings.timeout = duration,
                Ok(_) => self.report_at(timeout.span(), "timeout must be at least 1s"),
                Err(message) => self.report_at(timeout.span(), message),
            }
        }
        if let Some(server) = &doc.dns_server {
            let text = server.get_ref().trim();
            let parsed = text
                .parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .ok()
                .filter(|addr| addr.port() != 0);
            match parsed {
                Some(addr) => settings.dns_server = Some(addr),
                None => self.report_at(
                    server.span(),
                    format!(
                        "dns_server '{text}' is not an address (192.0.2.53, 192.0.2.53:5353,                          [2001:db8::53]:53)"
                    ),
                ),
            }
        }
        settings
    }

    /// `[fleet]`: checked here for what needs no network (the URL's form, the names).
    pub(super) fn read_fleet(
        &mut self,
        doc: Option<&super::doc::FleetDoc>,
    ) -> Option<crate::policy::fleet::FleetSettings> {
        let doc = doc?;
        let mut settings = crate::policy::fleet::FleetSettings::new(doc.redis.get_ref().trim());
        if let Err(message) = crate::policy::fleet::check_redis_url(&settings.redis) {
            self.report_at(doc.redis.span(), message);
        }
        for (field, target) in [
            (&doc.name, &mut settings.name),
            (&doc.host, &mut settings.host),
        ] {
            if let Some(value) = field {
                match crate::policy::fleet::check_name(value.get_ref()) {
                    Ok(()) => *target = value.get_ref().clone(),
                    Err(message) => self.report_at(value.span(), message),
                }
            }
        }
        settings.password_file = doc
            .password_file
            .as_ref()
            .map(|file| std::path::PathBuf::from(file.get_ref()));
        settings.ca_file = doc
            .ca_file
            .as_ref()
            .map(|file| std::path::PathBuf::from(file.get_ref()));
        if let Some(file) = &doc.ca_file
            && !settings.redis.starts_with("rediss://")
        {
            self.report_at(file.span(), "ca_file needs a rediss:// (TLS) URL");
        }
        Some(settings)
    }

    fn read_refresh(&mut self, refresh: Option<&Spanned<DurationDoc>>) -> Option<Duration> {
        let refresh = refresh?;
        match read_duration(refresh.get_ref()) {
            Ok(duration) if duration >= MIN_REFRESH => Some(duration),
            Ok(_) => {
                self.report_at(refresh.span(), "refresh must be at least 1s");
                None
            }
            Err(message) => {
                self.report_at(refresh.span(), message);
                None
            }
        }
    }

    fn read_max_shrink(&mut self, share: Option<&Spanned<f64>>) -> Option<f64> {
        let share = share?;
        if (0.0..=1.0).contains(share.get_ref()) {
            Some(*share.get_ref())
        } else {
            self.report_at(
                share.span(),
                "max_shrink is a share between 0 (no entry may go) and 1 (any may)",
            );
            None
        }
    }

    /// The URLs and hostnames of one allow entry, checked without any network.
    fn read_remote(
        &mut self,
        group: &Group,
        list: &ListDoc,
        settings: &RemoteSettings,
        remote: &mut Vec<RemoteSource>,
    ) {
        let refresh = self
            .read_refresh(list.refresh.as_ref())
            .unwrap_or(settings.refresh);
        let max_shrink = self
            .read_max_shrink(list.max_shrink.as_ref())
            .unwrap_or(settings.max_shrink);
        let json_path =
            list.json_path
                .as_ref()
                .and_then(|path| match JsonPath::parse(path.get_ref()) {
                    Ok(parsed) => Some(parsed),
                    Err(message) => {
                        self.report_at(path.span(), message);
                        None
                    }
                });
        if let Some(path) = &list.json_path
            && list.urls.is_empty()
        {
            self.report_at(
                path.span(),
                "json_path without urls: it reads fetched lists",
            );
        }
        if list.urls.is_empty() && list.hosts.is_empty() {
            for (field, span) in [
                ("refresh", list.refresh.as_ref().map(Spanned::span)),
                ("max_shrink", list.max_shrink.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.report_at(
                        span,
                        format!("{field} without urls or hosts: nothing to refresh"),
                    );
                }
            }
        }
        let mut add = |context: &mut Self, span: std::ops::Range<usize>, kind: RemoteKind| {
            let line = context.line_at(span);
            remote.push(RemoteSource {
                group: group.name.clone(),
                class: group.class.clone(),
                kind,
                refresh,
                max_shrink,
                at: Location {
                    file: context.path.to_path_buf(),
                    line,
                },
            });
        };
        for url in &list.urls {
            match check_url(url.get_ref()) {
                Ok(()) => add(
                    self,
                    url.span(),
                    RemoteKind::Url {
                        url: url.get_ref().clone(),
                        json_path: json_path.clone(),
                    },
                ),
                Err(message) => self.report_at(url.span(), message),
            }
        }
        for host in &list.hosts {
            match check_hostname(host.get_ref()) {
                Ok(()) => add(
                    self,
                    host.span(),
                    RemoteKind::Host {
                        name: host.get_ref().clone(),
                    },
                ),
                Err(message) => self.report_at(host.span(), message),
            }
        }
    }

    /// Deny entries are written out: a denylist that empties when a server is down or a name
    /// fails to resolve would be a silent hole.
    fn refuse_remote(&mut self, list: &ListDoc) {
        let spans = list
            .urls
            .iter()
            .chain(&list.hosts)
            .map(Spanned::span)
            .chain(list.json_path.as_ref().map(Spanned::span))
            .chain(list.refresh.as_ref().map(Spanned::span))
            .chain(list.max_shrink.as_ref().map(Spanned::span))
            .min_by_key(|span| span.start);
        if let Some(span) = spans {
            self.report_at(
                span,
                "urls, hosts and their settings are for allow entries; list denied sources                  under cidrs or files",
            );
        }
    }

    /// Only allowed sources have a budget; denied ones are dropped before any budget applies.
    fn read_list_class(&mut self, kind: ListKind, class: &Spanned<String>) -> Option<String> {
        match kind {
            ListKind::Deny => {
                self.report_at(class.span(), "a deny entry has no budget class");
                None
            }
            ListKind::Allow => self
                .check_class_is_defined(class)
                .then(|| class.get_ref().clone()),
        }
    }

    fn read_inline_cidrs(
        &mut self,
        group: &Group,
        cidrs: &[Spanned<String>],
        rules: &mut Vec<Rule>,
    ) {
        for cidr in cidrs {
            let line = self.line_at(cidr.span());
            match parse_net(cidr.get_ref()) {
                Ok(net) => rules.push(group.rule(net, self.path, line)),
                Err(message) => self.report(line, message),
            }
        }
    }

    /// A list file that cannot be read is reported at the line of the policy that names it.
    fn read_list_files(&mut self, group: &Group, files: &[Spanned<String>], rules: &mut Vec<Rule>) {
        for file in files {
            let list_path = self.base_dir.join(file.get_ref());
            match fs::read_to_string(&list_path) {
                Ok(list_text) => {
                    self.digest.feed(list_text.as_bytes());
                    read_list_file(&mut self.checker, &list_path, &list_text, group, rules);
                }
                Err(error) => self.report_at(
                    file.span(),
                    format!("cannot read list file {}: {error}", list_path.display()),
                ),
            }
        }
    }

    /// The same prefix both allowed and denied is a contradiction, not a preference.
    pub(super) fn check_conflicts(&mut self, allow: &[Rule], deny: &[Rule]) {
        let allowed: HashMap<IpNet, &Rule> = allow.iter().map(|rule| (rule.net, rule)).collect();
        for rule in deny {
            if let Some(other) = allowed.get(&rule.net) {
                self.checker.report(
                    &rule.at.file,
                    rule.at.line,
                    format!(
                        "{} is denied here and allowed at {}; remove one of them",
                        rule.net, other.at
                    ),
                );
            }
        }
    }

    /// The kernel's prefix tables have a fixed size per address family.
    pub(super) fn check_capacity(&mut self, kind: ListKind, rules: &[Rule]) {
        let v4 = rules
            .iter()
            .filter(|rule| rule.net.addr().is_ipv4())
            .count();
        let v6 = rules.len() - v4;
        for (family, count) in [("IPv4", v4), ("IPv6", v6)] {
            if count > MAX_PREFIXES as usize {
                let message = format!(
                    "{count} {family} {} entries; the filter holds at most {MAX_PREFIXES}",
                    kind.name()
                );
                self.report(0, message);
            }
        }
    }
}

/// One address or CIDR per line; `#` starts a comment; blank lines are fine. Its problems point
/// into the list file itself, hence the bare [`Checker`] rather than the policy's context.
fn read_list_file(
    checker: &mut Checker,
    list_path: &Path,
    list_text: &str,
    group: &Group,
    rules: &mut Vec<Rule>,
) {
    for (index, raw) in list_text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_net(entry) {
            Ok(net) => rules.push(group.rule(net, list_path, index + 1)),
            Err(message) => checker.report(list_path, index + 1, message),
        }
    }
}
