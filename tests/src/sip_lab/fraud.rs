//! Toll fraud from a compromised phone (issue 12): account 1002, whose password leaked, registers
//! correctly and then places calls from its own access-zone address, normal calls to NANP numbers
//! (which the carrier answers) interleaved with INVITEs to premium and far international numbers
//! in the notations fraudsters use (`+`, the NANP international prefix `011`, an escaped `%2B`,
//! visual separators, a `tel:` URI). The calls authenticate, so Kamailio routes them all to the
//! carrier: only a destination rule in front of it can stop them.
//!
//! What the lab measures: the fraudulent INVITEs that reached Kamailio (its script logs one
//! `SG-INV` line per INVITE, with the request URI's user part), the calls the carrier answered
//! (sipp logs one `SG-CALL-DONE` line per completed call), and sipguard's drop events by reason,
//! rule and source.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::CallStats;

/// The compromised phone's address, in the access zone next to the remote phone.
pub const COMPROMISED_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 20);
/// Calls per second the compromised phone places (its calls take 15 s).
pub const CALL_RATE: u32 = 2;
/// sipp's injection file for the calls: one line per call, in order.
pub const NUMBERS_FILE: &str = "compromised-numbers.csv";
/// sipp's log of completed calls (`<log>` actions of compromised-call.xml).
pub const CALLS_LOG: &str = "compromised-calls.log";

/// One call of the compromised phone.
#[derive(Clone, Copy, Debug)]
pub struct Dial {
    /// The request URI's user part (the number as dialled), or a `tel:` URI's number.
    pub user: &'static str,
    pub tel: bool,
    /// The destination rule of the lab policy (assets/policy.toml) that should stop it, or
    /// `None` for a legitimate call.
    pub rule: Option<&'static str>,
    pub what: &'static str,
}

impl Dial {
    pub fn uri(&self) -> String {
        if self.tel {
            format!("tel:{}", self.user)
        } else {
            format!("sip:{}@{}:5070", self.user, super::SBC)
        }
    }

    pub fn legit(&self) -> bool {
        self.rule.is_none()
    }
}

const fn legit(user: &'static str) -> Dial {
    Dial {
        user,
        tel: false,
        rule: None,
        what: "NANP",
    }
}

const fn fraud(user: &'static str, rule: &'static str, what: &'static str) -> Dial {
    Dial {
        user,
        tel: false,
        rule: Some(rule),
        what,
    }
}

/// The legitimate calls: numbers in the US (+1 555), as E.164, with the national prefix 1, and
/// with separators. The carrier answers them.
pub const LEGIT: [Dial; 10] = [
    legit("+15551230001"),
    legit("+15551230002"),
    legit("15551230003"),
    legit("+15551230004"),
    legit("+1-555-123-0005"),
    legit("+15551230006"),
    legit("+15551230007"),
    legit("15551230008"),
    legit("+15551230009"),
    legit("+15551230010"),
];

/// The fraudulent calls, in the order placed: 8 premium (satellite +881/+882, US 1-900 and
/// 1-976), 6 high-risk countries (Somalia +252, Cuba +53), 6 to the UK (+44: international, within
/// a budget of 3 a minute, so 3 of 6 would pass).
pub const FRAUD: [Dial; 20] = [
    fraud("+881631234567", "premium", "satellite (Iridium)"),
    fraud("011252612345678", "high-risk", "Somalia via 011"),
    fraud("+44-20-7946-0001", "international", "UK, separators"),
    fraud("%2B5372345678", "high-risk", "Cuba, escaped +"),
    fraud("19005550100", "premium", "US 1-900"),
    fraud("+44-20-7946-0002", "international", "UK, separators"),
    Dial {
        user: "+881641234567",
        tel: true,
        rule: Some("premium"),
        what: "satellite (Iridium), tel: URI",
    },
    fraud("+882161234567", "premium", "satellite (Thuraya)"),
    fraud("+44-20-7946-0003", "international", "UK, separators"),
    fraud("+252612345680", "high-risk", "Somalia"),
    fraud("+19765550101", "premium", "US 1-976"),
    fraud("+44-20-7946-0004", "international", "UK, separators"),
    fraud(
        "%2B53-7-234-5679",
        "high-risk",
        "Cuba, escaped +, separators",
    ),
    fraud("011881631234568", "premium", "satellite via 011"),
    fraud("+44-20-7946-0005", "international", "UK, separators"),
    fraud("0115378765432", "high-risk", "Cuba via 011"),
    fraud("+19005550102", "premium", "US 1-900"),
    fraud("+44-20-7946-0006", "international", "UK, separators"),
    fraud("011252612345681", "high-risk", "Somalia via 011"),
    fraud("%2B881631234569", "premium", "satellite, escaped +"),
];

/// Rules whose calls the intended policy denies outright (the others are budget-limited).
pub const DENIED_RULES: [&str; 2] = ["premium", "high-risk"];

/// Every call in the order placed: one legitimate call, then two fraudulent ones, and so on.
pub fn plan() -> Vec<Dial> {
    let mut legit = LEGIT.iter();
    let mut fraud = FRAUD.iter();
    let mut plan = Vec::new();
    for i in 0..LEGIT.len() + FRAUD.len() {
        let next = if i % 3 == 0 {
            legit.next().or_else(|| fraud.next())
        } else {
            fraud.next().or_else(|| legit.next())
        };
        plan.extend(next.copied());
    }
    plan
}

/// sipp's injection file: request URI; legit or fraud; the rule that should stop it.
pub fn numbers_file() -> String {
    let mut out = String::from("SEQUENTIAL\n");
    for dial in plan() {
        let _ = writeln!(
            out,
            "{};{};{}",
            dial.uri(),
            if dial.legit() { "legit" } else { "fraud" },
            dial.rule.unwrap_or("-")
        );
    }
    out
}

/// INVITEs of one kind of call that reached Kamailio.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reach {
    /// Calls placed.
    pub planned: u64,
    /// Calls with at least one INVITE in Kamailio's log (distinct Call-IDs).
    pub attempts: u64,
    /// INVITE packets logged (the unauthenticated INVITE, the authenticated retry after the
    /// 407, and any retransmission).
    pub packets: u64,
}

/// The compromised phone's run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompromisedView {
    pub registrations: CallStats,
    /// sipp's totals, legitimate and fraudulent calls together.
    pub calls: CallStats,
    pub legit_planned: u64,
    /// Legitimate calls completed (INVITE, 200, ACK, BYE, 200).
    pub legit_completed: u64,
    pub fraud_planned: u64,
    /// Fraudulent calls the carrier answered and that completed: billed to the victim.
    pub fraud_answered: u64,
    /// Fraudulent INVITEs that reached Kamailio, all rules together.
    pub fraud_reaching_kamailio: Reach,
    /// The same by the rule that should stop them (premium, high-risk, international).
    pub fraud_by_rule: BTreeMap<String, Reach>,
    pub legit_reaching_kamailio: Reach,
    /// INVITEs from the compromised phone whose number is on neither list (a notation Kamailio
    /// logs differently from the dialled one): should stay empty.
    pub unmatched_numbers: BTreeMap<String, u64>,
}

impl CompromisedView {
    /// Fraudulent calls to destinations the intended policy denies outright, reaching Kamailio.
    pub fn denied_reaching_kamailio(&self) -> Reach {
        let mut sum = Reach::default();
        for rule in DENIED_RULES {
            if let Some(reach) = self.fraud_by_rule.get(rule) {
                sum.planned += reach.planned;
                sum.attempts += reach.attempts;
                sum.packets += reach.packets;
            }
        }
        sum
    }
}

/// The `SG-INV <time> <source ip> <source port> <local port> <cseq> <call-id> <R-URI user>`
/// lines from the compromised phone, and sipp's `SG-CALL-DONE <legit|fraud> <rule> <call-id>`
/// lines.
pub fn compromised_view(
    kamailio_log: &Path,
    sipp_log: &Path,
    registrations: CallStats,
    calls: CallStats,
) -> CompromisedView {
    let plan = plan();
    let rule_of = |user: &str| plan.iter().find(|d| d.user == user).map(|d| d.rule);
    let mut per_user: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    let text = fs::read_to_string(kamailio_log).unwrap_or_default();
    for line in text.lines() {
        let Some(rest) = line.split("SG-INV ").nth(1) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [_time, source, _sport, _local_port, _cseq, call_id, user] = fields[..] else {
            continue;
        };
        if source.parse::<Ipv4Addr>() != Ok(COMPROMISED_IP) {
            continue;
        }
        let entry = per_user.entry(user.to_string()).or_default();
        entry.0.insert(call_id.to_string());
        entry.1 += 1;
    }
    let mut view = CompromisedView {
        registrations,
        calls,
        legit_planned: LEGIT.len() as u64,
        fraud_planned: FRAUD.len() as u64,
        ..CompromisedView::default()
    };
    view.legit_reaching_kamailio.planned = view.legit_planned;
    view.fraud_reaching_kamailio.planned = view.fraud_planned;
    for dial in FRAUD {
        let rule = dial.rule.unwrap_or("-").to_string();
        view.fraud_by_rule.entry(rule).or_default().planned += 1;
    }
    let mut call_ids: BTreeMap<Option<&str>, BTreeSet<String>> = BTreeMap::new();
    for (user, (ids, packets)) in &per_user {
        match rule_of(user) {
            None => {
                view.unmatched_numbers.insert(user.clone(), *packets);
            }
            Some(None) => {
                view.legit_reaching_kamailio.packets += packets;
                call_ids
                    .entry(None)
                    .or_default()
                    .extend(ids.iter().cloned());
            }
            Some(Some(rule)) => {
                view.fraud_reaching_kamailio.packets += packets;
                view.fraud_by_rule
                    .entry(rule.to_string())
                    .or_default()
                    .packets += packets;
                call_ids
                    .entry(Some(rule))
                    .or_default()
                    .extend(ids.iter().cloned());
            }
        }
    }
    for (rule, ids) in &call_ids {
        let attempts = ids.len() as u64;
        match rule {
            None => view.legit_reaching_kamailio.attempts += attempts,
            Some(rule) => {
                view.fraud_reaching_kamailio.attempts += attempts;
                view.fraud_by_rule
                    .entry((*rule).to_string())
                    .or_default()
                    .attempts += attempts;
            }
        }
    }
    let done = fs::read_to_string(sipp_log).unwrap_or_default();
    for line in done.lines() {
        let Some(rest) = line.split("SG-CALL-DONE ").nth(1) else {
            continue;
        };
        match rest.split_whitespace().next() {
            Some("legit") => view.legit_completed += 1,
            Some("fraud") => view.fraud_answered += 1,
            _ => {}
        }
    }
    view
}

/// Drop events of one reason, rule and source class, from sipguard's JSON-lines event log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DropTally {
    pub zone: String,
    pub reason: String,
    /// The destination rule or scanner signature that dropped the packets, when the event log
    /// names one (sipguard versions before destination rules do not).
    pub rule: Option<String>,
    /// Source class (carrier, phone, compromised, scanner, enumerator, cracker, flood, other).
    pub source: String,
    /// `dropped` or `would_drop`.
    pub outcome: String,
    pub events: u64,
    /// Drops of the same sources that got no event of their own (the per-source event budget
    /// was spent), counted before these events: of this reason or of an earlier one.
    pub suppressed_before: u64,
    /// Normalised numbers named by the events, when the log names them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub numbers: BTreeSet<String>,
}

/// The fields of a drop event the lab reads; unknown fields are ignored and the newer ones
/// (`rule`, `number`) may be absent, null, strings or numbers (a rule id).
#[derive(Deserialize)]
struct LoggedDrop {
    src: Option<IpAddr>,
    #[serde(default)]
    sport: u16,
    #[serde(default)]
    zone: String,
    reason: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    suppressed_before: u64,
    #[serde(default)]
    rule: Option<serde_json::Value>,
    #[serde(default)]
    number: Option<serde_json::Value>,
}

/// A string or a number as text; `None` for anything else (null, empty).
fn as_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the event log into tallies by zone, reason, rule, source class (of the source address
/// and port) and outcome.
pub fn drop_tallies(
    log: &Path,
    class_of: impl Fn(Ipv4Addr, u16) -> &'static str,
) -> Vec<DropTally> {
    let mut tallies: BTreeMap<(String, String, Option<String>, String, String), DropTally> =
        BTreeMap::new();
    let text = fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<LoggedDrop>(line) else {
            continue;
        };
        let source = match event.src {
            Some(IpAddr::V4(ip)) => class_of(ip, event.sport),
            _ => "other",
        };
        let rule = as_text(event.rule);
        let key = (
            event.zone.clone(),
            event.reason.clone(),
            rule.clone(),
            source.to_string(),
            event.outcome.clone(),
        );
        let tally = tallies.entry(key).or_insert_with(|| DropTally {
            zone: event.zone,
            reason: event.reason,
            rule,
            source: source.to_string(),
            outcome: event.outcome,
            ..DropTally::default()
        });
        tally.events += 1;
        tally.suppressed_before += event.suppressed_before;
        if let Some(number) = as_text(event.number) {
            tally.numbers.insert(number);
        }
    }
    tallies.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_interleaves_every_call_once() {
        let plan = plan();
        assert_eq!(plan.len(), 30);
        assert!(plan[0].legit() && !plan[1].legit() && !plan[2].legit() && plan[3].legit());
        assert_eq!(plan.iter().filter(|d| d.legit()).count(), LEGIT.len());
        let users: BTreeSet<&str> = plan.iter().map(|d| d.user).collect();
        assert_eq!(users.len(), 30, "every number once");
        let file = numbers_file();
        assert!(file.starts_with("SEQUENTIAL\n"));
        assert!(file.contains("\ntel:+881641234567;fraud;premium\n"));
        assert!(file.contains("\nsip:+15551230001@198.18.0.1:5070;legit;-\n"));
        assert!(!file.lines().skip(1).any(|l| l.split(';').count() != 3));
    }

    #[test]
    fn the_lab_policy_sends_every_number_to_its_rule() {
        use sipguard::policy::{
            Policy, Tables,
            sip_tables::{SipIds, judge_number},
        };
        use sipguard_common::abi::{Mode, Zone};
        let policy = Policy::parse(include_str!("assets/policy.toml"), "policy.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let tables = Tables::compile(
            &policy,
            Mode::Enforce,
            &Default::default(),
            &Default::default(),
            0,
            &SipIds::default(),
        );
        let zone = tables.sip.sip.zones[Zone::Access as usize - 1];
        let budgets: Vec<String> = policy.sip.destination_budgets.keys().cloned().collect();
        for dial in plan() {
            let verdict = judge_number(
                Zone::Access,
                &dial.uri(),
                &zone,
                &tables.sip.destinations,
                &budgets,
            );
            let expected = dial.rule.unwrap_or("access-default");
            assert_eq!(verdict.rule, expected, "{} ({})", dial.user, dial.what);
            let action = match dial.rule {
                None => "allow",
                Some("international") => "budget international",
                Some(_) => "deny",
            };
            assert_eq!(verdict.action, action, "{}", dial.user);
        }
    }

    #[test]
    fn kamailio_and_sipp_logs_are_counted_per_call_and_packet() {
        let dir = tempfile::tempdir().unwrap();
        let kamailio = dir.path().join("kamailio.err");
        let sipp = dir.path().join("calls.log");
        fs::write(
            &kamailio,
            " 0(1) NOTICE: <script>: SG-INV 1.5 198.18.2.20 5062 5070 1 1-9@198.18.2.20 +881631234567\n\
             SG-INV 1.6 198.18.2.20 5062 5070 2 1-9@198.18.2.20 +881631234567\n\
             SG-INV 1.7 198.18.2.20 5062 5070 1 2-9@198.18.2.20 +44-20-7946-0001\n\
             SG-INV 1.8 198.18.2.20 5062 5070 1 3-9@198.18.2.20 +15551230001\n\
             SG-INV 1.9 198.18.2.10 5062 5070 1 4-9@198.18.2.10 +881631234567\n\
             SG-INV 2.0 198.18.2.20 5062 5070 1 5-9@198.18.2.20 <null>\n",
        )
        .unwrap();
        fs::write(
            &sipp,
            "SG-CALL-DONE legit - 3-9@198.18.2.20\nSG-CALL-DONE fraud premium 1-9@198.18.2.20\n",
        )
        .unwrap();
        let view = compromised_view(&kamailio, &sipp, CallStats::default(), CallStats::default());
        assert_eq!(view.fraud_reaching_kamailio.attempts, 2);
        assert_eq!(view.fraud_reaching_kamailio.packets, 3);
        assert_eq!(view.fraud_by_rule["premium"].attempts, 1);
        assert_eq!(view.fraud_by_rule["premium"].packets, 2);
        assert_eq!(view.fraud_by_rule["premium"].planned, 8);
        assert_eq!(view.denied_reaching_kamailio().attempts, 1);
        assert_eq!(view.legit_reaching_kamailio.attempts, 1);
        assert_eq!(view.legit_completed, 1);
        assert_eq!(view.fraud_answered, 1);
        assert_eq!(view.unmatched_numbers.get("<null>"), Some(&1));
    }

    #[test]
    fn drop_events_with_and_without_rules_are_tallied() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        fs::write(
            &log,
            r#"{"seq":1,"time":"t","interface":"eth0","src":"198.18.3.11","dst":"198.18.0.1","sport":5060,"dport":5070,"transport":"udp","reason":"rate_limited","zone":"access","outcome":"dropped","length":400,"sip_method":"REGISTER","suppressed_before":0}
{"seq":2,"time":"t","interface":"eth0","src":"198.18.3.11","dst":"198.18.0.1","sport":5060,"dport":5070,"transport":"udp","reason":"rate_limited","zone":"access","outcome":"dropped","length":400,"suppressed_before":7}
{"seq":3,"time":"t","interface":"eth0","src":"198.18.2.20","dst":"198.18.0.1","sport":5062,"dport":5070,"transport":"udp","reason":"destination_denied","zone":"access","outcome":"dropped","length":400,"sip_method":"INVITE","suppressed_before":0,"rule":"premium","number":"881631234567"}
{"seq":4,"time":"t","interface":"eth0","src":"198.18.2.20","dst":"198.18.0.1","sport":5062,"dport":5070,"transport":"udp","reason":"destination_denied","zone":"access","outcome":"dropped","length":400,"suppressed_before":0,"rule":"premium","number":null}
{"seq":5,"time":"t","interface":"eth0","src":"198.18.2.20","dst":"198.18.0.1","sport":5062,"dport":5070,"transport":"udp","reason":"scanner","zone":"access","outcome":"dropped","length":400,"suppressed_before":0,"rule":3}
not json
"#,
        )
        .unwrap();
        let tallies = drop_tallies(&log, |ip, port| {
            assert!(port == 5060 || port == 5062, "{port}");
            if ip == COMPROMISED_IP {
                "compromised"
            } else {
                "enumerator"
            }
        });
        assert_eq!(tallies.len(), 3);
        let denied = tallies
            .iter()
            .find(|t| t.reason == "destination_denied")
            .unwrap();
        assert_eq!(denied.rule.as_deref(), Some("premium"));
        assert_eq!(denied.source, "compromised");
        assert_eq!(denied.events, 2);
        assert_eq!(denied.numbers.len(), 1);
        assert!(denied.numbers.contains("881631234567"));
        let scanner = tallies.iter().find(|t| t.reason == "scanner").unwrap();
        assert_eq!(scanner.rule.as_deref(), Some("3"));
        let limited = tallies.iter().find(|t| t.reason == "rate_limited").unwrap();
        assert_eq!((limited.events, limited.suppressed_before), (2, 7));
        assert_eq!(limited.rule, None);
    }
}
