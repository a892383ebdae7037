//! Allowlist sources that live elsewhere: lists at URLs and provider hostnames (A/AAAA, SRV).
//!
//! The policy only names them ([`RemoteSource`]); `crate::lists` fetches and resolves them. What
//! a fetched body means is decided here, beside the list files it mirrors: plain text is read like
//! a list file (one address or CIDR per line, `#` comments), JSON through a [`JsonPath`].
//!
//! A JSON path is one or more alternatives separated by `,`; each is a chain of keys separated
//! by `.`, and `[]` after a key (or alone, for a top-level array) takes every element of an array.
//! What a path reaches must be strings (or arrays of strings) holding addresses or CIDRs:
//!
//! ```text
//! prefixes[].ip_prefix, ipv6_prefixes[].ipv6_prefix   AWS ip-ranges.json
//! result.ipv4_cidrs[], result.ipv6_cidrs[]            a {"result": {"ipv4_cidrs": [...]}} API
//! []                                                  ["192.0.2.1", "2001:db8::/48"]
//! [].address                                          [{"address": "192.0.2.1"}, ...]
//! ```

use std::{collections::BTreeSet, fmt, net::SocketAddr, time::Duration};

use ipnet::IpNet;
use serde_json::Value;

use super::{Location, parse_net};

/// How often remote sources are fetched or resolved, unless the policy says otherwise.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// A new list with fewer than this share of the last good one's entries gone is applied; one
/// that lost more is held back.
pub const DEFAULT_MAX_SHRINK: f64 = 0.5;
/// Deadline of one fetch (HTTP) or one resolution (DNS, all its queries).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest list body read from a URL.
pub const MAX_BODY_BYTES: u64 = 16 << 20;
/// Shortest refresh interval accepted.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// `[lists]`: settings of every remote source.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSettings {
    /// Default refresh interval of the entries that name none.
    pub refresh: Duration,
    /// Default shrink limit.
    pub max_shrink: f64,
    /// Deadline of one fetch or resolution.
    pub timeout: Duration,
    /// DNS server for hostnames; `None`: the servers of /etc/resolv.conf.
    pub dns_server: Option<SocketAddr>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            refresh: DEFAULT_REFRESH,
            max_shrink: DEFAULT_MAX_SHRINK,
            timeout: DEFAULT_TIMEOUT,
            dns_server: None,
        }
    }
}

/// What a remote source is.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteKind {
    /// An http(s) URL serving a list: plain text, or JSON read through the path.
    Url {
        url: String,
        json_path: Option<JsonPath>,
    },
    /// A hostname: its A and AAAA records; a name starting with `_` (`_sip._udp.example.net`)
    /// is an SRV name: its targets' A and AAAA records.
    Host { name: String },
}

/// One URL or hostname of an `[[allow]]` entry, with the entry's name and class.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSource {
    /// The `name` of the `[[allow]]` entry.
    pub group: String,
    pub class: Option<String>,
    pub kind: RemoteKind,
    pub refresh: Duration,
    /// Share of the last good list's entries a new list may lose and still be applied (0..=1;
    /// 1: any shrink is applied).
    pub max_shrink: f64,
    /// Where the policy names it.
    pub at: Location,
}

impl RemoteSource {
    /// The URL or the hostname, as written.
    pub fn source(&self) -> &str {
        match &self.kind {
            RemoteKind::Url { url, .. } => url,
            RemoteKind::Host { name } => name,
        }
    }

    /// `url`, `dns` or `srv`.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            RemoteKind::Url { .. } => "url",
            RemoteKind::Host { name } if is_srv_name(name) => "srv",
            RemoteKind::Host { .. } => "dns",
        }
    }
}

/// An SRV name: its first label starts with `_` (`_sip._udp.carrier.example`).
pub fn is_srv_name(name: &str) -> bool {
    name.starts_with('_')
}

/// Would this list lose too much? `old`: entries of the last good list.
pub fn shrinks_too_much(old: usize, new: usize, max_shrink: f64) -> bool {
    if old == 0 || new >= old {
        return false;
    }
    let lost = (old - new) as f64 / old as f64;
    lost > max_shrink
}

/// Checks a URL without fetching it: http or https, a host, no spaces.
pub fn check_url(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("'{text}' is not an http:// or https:// URL"))?;
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{text}' contains white space"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        let (addr, port) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{text}': unclosed '[' in the host"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{text}': '{addr}' is not an IPv6 address"))?;
        check_port(text, port.strip_prefix(':'))?;
        return Ok(());
    } else {
        let (host, port) = match host.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host, None),
        };
        check_port(text, port)?;
        host
    };
    if host.is_empty() {
        return Err(format!("'{text}' names no host"));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    check_hostname(host).map_err(|reason| format!("'{text}': {reason}"))
}

fn check_port(text: &str, port: Option<&str>) -> Result<(), String> {
    match port {
        None => Ok(()),
        Some(port) => match port.parse::<u16>() {
            Ok(1..) => Ok(()),
            _ => Err(format!("'{text}': '{port}' is not a port")),
        },
    }
}

/// Checks a hostname (or SRV name) without resolving it: labels of letters, digits, `-` (and a
/// leading `_` for SRV labels), at most 63 characters each, 253 in all; a final `.` is fine.
/// An address is refused: write it under `cidrs`.
pub fn check_hostname(text: &str) -> Result<(), String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "'{text}' is an address, not a hostname; list it under cidrs"
        ));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("'{text}' is not a hostname (1 to 253 characters)"));
    }
    for label in name.split('.') {
        let body = label.strip_prefix('_').unwrap_or(label);
        let valid = !body.is_empty()
            && label.len() <= 63
            && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !body.starts_with('-')
            && !body.ends_with('-');
        if !valid {
            return Err(format!(
                "'{text}' is not a hostname ('{label}': letters, digits and inner '-', at most 63)"
            ));
        }
    }
    Ok(())
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Each,
}

/// Where the addresses are in a JSON list (syntax in the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    alternatives: Vec<Vec<Step>>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let mut alternatives = Vec::new();
        for alternative in text.split(',') {
            let alternative = alternative.trim();
            let mut steps = Vec::new();
            let body = alternative.strip_prefix("$.").unwrap_or(alternative);
            if body.is_empty() {
                return Err(format!("json_path '{text}': an empty path"));
            }
            for part in body.split('.') {
                let mut key = part;
                let mut each = 0;
                while let Some(rest) = key.strip_suffix("[]") {
                    key = rest;
                    each += 1;
                }
                if !key.is_empty() {
                    if !key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(format!(
                            "json_path '{text}': '{part}' (keys are letters, digits, '_' and '-', \
                             '[]' takes each element of an array)"
                        ));
                    }
                    steps.push(Step::Key(key.to_string()));
                } else if each == 0 {
                    return Err(format!(
                        "json_path '{text}': an empty key in '{alternative}'"
                    ));
                }
                steps.extend(std::iter::repeat_n(Step::Each, each));
            }
            alternatives.push(steps);
        }
        Ok(JsonPath {
            text: text.to_string(),
            alternatives,
        })
    }

    /// The strings the path reaches; an error when it reaches something else, or nothing.
    fn strings<'v>(&self, value: &'v Value) -> Result<Vec<&'v str>, String> {
        let mut found = Vec::new();
        for steps in &self.alternatives {
            let mut values = vec![value];
            for step in steps {
                let mut next = Vec::new();
                for value in values {
                    match (step, value) {
                        (Step::Key(key), Value::Object(map)) => next.extend(map.get(key)),
                        (Step::Each, Value::Array(items)) => next.extend(items),
                        (Step::Key(key), _) => {
                            return Err(format!("json_path {self}: '{key}' of a non-object"));
                        }
                        (Step::Each, _) => {
                            return Err(format!("json_path {self}: '[]' of a non-array"));
                        }
                    }
                }
                values = next;
            }
            for value in values {
                match value {
                    Value::String(text) => found.push(text.as_str()),
                    Value::Array(items) => {
                        for item in items {
                            match item {
                                Value::String(text) => found.push(text.as_str()),
                                other => return Err(not_a_string(self, other)),
                            }
                        }
                    }
                    other => return Err(not_a_string(self, other)),
                }
            }
        }
        if found.is_empty() {
            return Err(format!("json_path {self} finds nothing in the document"));
        }
        Ok(found)
    }
}

fn not_a_string(path: &JsonPath, value: &Value) -> String {
    let mut shown = value.to_string();
    shown.truncate(60);
    format!("json_path {path} reaches {shown}, not an address string")
}

/// A list body as a list file is read: one address or CIDR per line, `#` comments, blank lines.
/// Any bad line refuses the whole body (a half-read list is not applied).
pub fn parse_text_list(text: &str) -> Result<BTreeSet<IpNet>, String> {
    let mut nets = BTreeSet::new();
    for (index, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let net = parse_net(entry).map_err(|reason| format!("line {}: {reason}", index + 1))?;
        nets.insert(net);
    }
    Ok(nets)
}

/// A JSON list body: the addresses and CIDRs `path` reaches.
pub fn parse_json_list(text: &str, path: &JsonPath) -> Result<BTreeSet<IpNet>, String> {
    let document: Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    path.strings(&document)?
        .into_iter()
        .map(parse_net)
        .collect::<Result<BTreeSet<_>, _>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(items: &[&str]) -> BTreeSet<IpNet> {
        items.iter().map(|item| item.parse().unwrap()).collect()
    }

    #[test]
    fn text_lists_read_like_list_files_and_refuse_any_bad_line() {
        let body =
            "# carrier B\n198.51.100.0/24\n\n  192.0.2.7  # edge\n2001:db8:100::/48\n192.0.2.7\n";
        assert_eq!(
            parse_text_list(body).unwrap(),
            nets(&["198.51.100.0/24", "192.0.2.7/32", "2001:db8:100::/48"])
        );
        assert_eq!(parse_text_list("").unwrap(), BTreeSet::new());
        let error = parse_text_list("192.0.2.1\n<html>oops</html>\n").unwrap_err();
        assert!(error.starts_with("line 2: "), "{error}");
        let error = parse_text_list("192.0.2.1/24\n").unwrap_err();
        assert!(error.contains("host bits"), "{error}");
    }

    #[test]
    fn json_paths_reach_nested_arrays_alternatives_and_top_level_lists() {
        let aws = r#"{"syncToken":"1","prefixes":[{"ip_prefix":"198.51.100.0/24","region":"x"},
            {"ip_prefix":"192.0.2.0/25"}],"ipv6_prefixes":[{"ipv6_prefix":"2001:db8:1::/48"}]}"#;
        let path = JsonPath::parse("prefixes[].ip_prefix, ipv6_prefixes[].ipv6_prefix").unwrap();
        assert_eq!(
            parse_json_list(aws, &path).unwrap(),
            nets(&["198.51.100.0/24", "192.0.2.0/25", "2001:db8:1::/48"])
        );
        let api = r#"{"result":{"ipv4_cidrs":["192.0.2.0/24"],"ipv6_cidrs":["2001:db8::/32"]}}"#;
        let path = JsonPath::parse("$.result.ipv4_cidrs[],result.ipv6_cidrs").unwrap();
        assert_eq!(
            parse_json_list(api, &path).unwrap(),
            nets(&["192.0.2.0/24", "2001:db8::/32"])
        );
        let top = r#"[{"address":"192.0.2.1"},{"address":"192.0.2.2"}]"#;
        let path = JsonPath::parse("[].address").unwrap();
        assert_eq!(
            parse_json_list(top, &path).unwrap(),
            nets(&["192.0.2.1/32", "192.0.2.2/32"])
        );
        let plain = JsonPath::parse("[]").unwrap();
        assert_eq!(
            parse_json_list(r#"["192.0.2.9"]"#, &plain).unwrap(),
            nets(&["192.0.2.9/32"])
        );
    }

    #[test]
    fn json_bodies_that_do_not_fit_the_path_are_refused() {
        let path = JsonPath::parse("prefixes[].ip_prefix").unwrap();
        for (body, expected) in [
            ("not json", "not JSON"),
            (r#"{"other":[]}"#, "finds nothing"),
            (r#"{"prefixes":{"ip_prefix":"192.0.2.0/24"}}"#, "non-array"),
            (r#"{"prefixes":[{"ip_prefix":5}]}"#, "not an address string"),
            (r#"{"prefixes":[{"ip_prefix":"x"}]}"#, "not an IPv4/IPv6"),
        ] {
            let error = parse_json_list(body, &path).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn json_path_syntax() {
        for good in [
            "a",
            "a.b",
            "a[].b",
            "[]",
            "[][]",
            "a[][].b_c-d",
            "$.a",
            "a, b[]",
        ] {
            JsonPath::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "a..b", "a.", "a b", "a[0]", "a.*", ",a", "a[]x"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_shrink_rule() {
        assert!(!shrinks_too_much(0, 0, 0.5), "nothing to lose");
        assert!(!shrinks_too_much(10, 10, 0.5));
        assert!(!shrinks_too_much(10, 20, 0.0), "growth is always fine");
        assert!(!shrinks_too_much(10, 5, 0.5), "exactly the limit is fine");
        assert!(shrinks_too_much(10, 4, 0.5));
        assert!(shrinks_too_much(10, 1, 0.5), "90 % gone");
        assert!(shrinks_too_much(10, 0, 0.99));
        assert!(!shrinks_too_much(10, 0, 1.0), "1: any shrink");
        assert!(shrinks_too_much(10, 9, 0.0), "0: no shrink at all");
    }

    #[test]
    fn urls_and_hostnames_are_checked_without_network() {
        for good in [
            "http://198.18.3.80:8080/list.txt",
            "https://carrier.example/sip/ips.json?v=2",
            "https://[2001:db8::1]:8443/x",
            "http://user@lists.example.net",
        ] {
            check_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "ftp://x.example/",
            "carrier.example/list",
            "http:///list",
            "http://bad host/",
            "http://x.example:0/",
            "http://x.example:99999/",
            "http://[2001:db8::1/x",
            "http://-x.example/",
        ] {
            assert!(check_url(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "sip.carrier.example",
            "_sip._udp.carrier.example.",
            "a-b.c1",
        ] {
            check_hostname(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "192.0.2.1",
            "2001:db8::1",
            "a..b",
            "-a.b",
            "a_b.c",
            "a b",
            "x..",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad} accepted");
        }
        assert!(is_srv_name("_sip._udp.carrier.example"));
        assert!(!is_srv_name("sip.carrier.example"));
    }
}
