//! `[[allow]]` and `[[deny]]`: inline CIDRs and list files, then the checks across both lists.

use std::{collections::HashMap, fs, path::Path};

use ipnet::IpNet;
use sipguard_common::abi::MAX_PREFIXES;
use toml::Spanned;

use super::{ParseContext, check::Checker, doc::ListDoc};
use crate::policy::{Location, Rule, parse_net};

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
    /// `[[allow]]` or `[[deny]]` entries: inline CIDRs first, then list files, entry by entry.
    pub(super) fn read_lists(&mut self, kind: ListKind, lists: &[ListDoc]) -> Vec<Rule> {
        let mut rules = Vec::new();
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
        }
        rules
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
