//! The lab report: the same scenario under each protection, side by side.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    LabRun, Protection, Reach,
    fraud::{self, DENIED_RULES},
};

/// 1234567 as "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn ratio(ok: u64, of: u64) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{ok}/{of} ({:.0}%)", ok as f64 * 100.0 / of as f64)
    }
}

/// "attempts/planned calls, packets".
fn reach(r: &Reach) -> String {
    format!("{}/{} calls, {} pkts", r.attempts, r.planned, r.packets)
}

/// How the report names a source class.
fn source_label(class: &str) -> &str {
    match class {
        "scanner" => "svmap/svwar (trunk)",
        "enumerator" => "svwar (access)",
        "cracker" => "svcrack (access)",
        "flood" => "spoofed flood",
        "phone-spoofed" => "flood spoofing the phone",
        "fresh-phone" => "fresh phone",
        "compromised" => "compromised phone",
        other => other,
    }
}

/// How the report heads a run's column.
fn column_name(run: &LabRun) -> String {
    if run.attack_mode {
        format!("{}, attack mode on", run.protection.name())
    } else if run.fresh_phone.is_some() {
        format!("{}, gate open", run.protection.name())
    } else if run.feedback || run.protection == Protection::Off {
        run.protection.name().to_string()
    } else {
        format!("{} (no feedback)", run.protection.name())
    }
}

/// sipp's response time (whole milliseconds) in seconds, or "< 1 ms".
fn duration(seconds: f64) -> String {
    if seconds < 0.001 {
        "< 1 ms".to_string()
    } else {
        format!("{seconds:.3} s")
    }
}

/// "yes"/"no", or "-" without sipguard.
fn yes_no(value: Option<bool>) -> String {
    match value {
        None => "-".to_string(),
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
    }
}

/// Renders one or more runs of the lab as a table, then the details of the enforcing run.
pub fn render(runs: &[LabRun]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let scale = &first.scale;
    let pace = if scale.flood_rate > 0 {
        format!("at {}/s", thousands(scale.flood_rate.into()))
    } else {
        format!(
            "as fast as trafgen sends it ({} sender{}, each on its own CPU)",
            first.flood.senders,
            if first.flood.senders == 1 { "" } else { "s" }
        )
    };
    let _ = writeln!(
        out,
        "Scenario: carrier {} calls at {}/s over the trunk; phone {} registrations and {} calls \
         over the access port; a compromised phone (account 1002, password leaked) registers and \
         places {} NANP calls among {} fraudulent ones (premium, Somalia, Cuba, UK) at {}/s; \
         SIPVicious svmap/svwar for {} s each, and svcrack disguised as a Yealink phone at about \
         2 guesses/s; then, {}, a flood of OPTIONS {pace}, for {} s or {} packets: {}.\n",
        scale.carrier_calls,
        scale.carrier_rate,
        scale.phone_registrations,
        scale.phone_calls,
        fraud::LEGIT.len(),
        fraud::FRAUD.len(),
        fraud::CALL_RATE,
        scale.attack_seconds,
        if scale.flood_after_calls {
            "after the calls"
        } else {
            "while the carrier and the phone keep calling"
        },
        scale.flood_seconds,
        thousands(scale.flood_packets.into()),
        if scale.flood_access_only {
            "all of it from random spoofed 198.19.0.0/16 sources to the access port (5070)"
        } else {
            "a third from random spoofed 198.19.0.0/16 sources to 5060, a third from them to \
             5070, a third spoofing the registered phone (198.18.2.10) to 5070"
        },
    );
    if runs.iter().any(|r| r.fresh_phone.is_some()) {
        let _ = writeln!(
            out,
            "A phone that never registered before (198.18.2.30, account 1003) sends its first \
             REGISTER {} s into the flood and tries for up to {} s. With attack mode on, \
             `sipguard attack-mode on` shuts the access gate just before the flood.\n",
            super::FRESH_PHONE_DELAY.as_secs(),
            super::FRESH_PHONE_TIMEOUT_MS / 1000
        );
    }
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&LabRun) -> String| {
        rows.push((name.to_string(), runs.iter().map(f).collect()));
    };
    row("carrier calls completed", &|r| {
        ratio(r.carrier_calls.successful, r.carrier_calls.created)
    });
    row("phone registrations", &|r| {
        ratio(
            r.phone_registrations.successful,
            r.phone_registrations.created,
        )
    });
    row("phone calls completed", &|r| {
        ratio(r.phone_calls.successful, r.phone_calls.created)
    });
    row("  phone verified (before flood / after)", &|r| {
        if r.sipguard.is_none() {
            return "-".to_string();
        }
        format!(
            "{} / {}",
            yes_no(r.phone.verified_before_flood),
            yes_no(r.phone.verified_after)
        )
    });
    row(
        "  phone banned",
        &|r| match (&r.sipguard, &r.phone.ban_reason) {
            (None, _) => "-".to_string(),
            (Some(_), None) => "no".to_string(),
            (Some(_), Some(reason)) => format!("yes ({reason})"),
        },
    );
    row("  flood spoofing it: reaching Kamailio", &|r| {
        format!(
            "{} of {}",
            r.phone.spoofed_reaching_kamailio,
            thousands(r.flood.phone_spoofed)
        )
    });
    row(
        "svcrack banned",
        &|r| match (&r.sipguard, &r.cracker.ban_reason) {
            (None, _) => "-".to_string(),
            (Some(_), None) => "no".to_string(),
            // Monitor mode records would-be bans: counted, never enforced.
            (Some(_), Some(reason)) if r.protection == super::Protection::Monitor => {
                format!("would-be ({reason})")
            }
            (Some(_), Some(reason)) => format!("yes ({reason})"),
        },
    );
    row(
        "  its guesses reaching Kamailio",
        &|r| match r.cracker.registers_until_ban {
            Some(until) => format!("{} ({until} until the ban)", r.cracker.registers),
            None => r.cracker.registers.to_string(),
        },
    );
    if runs.iter().any(|r| r.fresh_phone.is_some()) {
        row("fresh phone registered during the flood", &|r| {
            r.fresh_phone.as_ref().map_or("-".to_string(), |f| {
                ratio(f.registration.successful, f.registration.created)
            })
        });
        row("  first REGISTER to 200 OK", &|r| match r
            .fresh_phone
            .as_ref()
            .map(|f| f.seconds_to_register)
        {
            None => "-".to_string(),
            Some(None) => "never".to_string(),
            Some(Some(seconds)) => duration(seconds),
        });
        row("  within the flood", &|r| {
            r.fresh_phone
                .as_ref()
                .map_or("-".to_string(), |f| yes_no(Some(f.during_flood)))
        });
        row("  its REGISTERs reaching Kamailio", &|r| {
            r.fresh_phone.as_ref().map_or("-".to_string(), |f| {
                f.registers_reaching_kamailio.to_string()
            })
        });
        row("  verified after", &|r| {
            r.fresh_phone
                .as_ref()
                .map_or("-".to_string(), |f| yes_no(f.verified_after))
        });
    }
    row("compromised phone registered", &|r| {
        ratio(
            r.compromised.registrations.successful,
            r.compromised.registrations.created,
        )
    });
    row("  its legitimate calls completed", &|r| {
        ratio(r.compromised.legit_completed, r.compromised.legit_planned)
    });
    row("  fraudulent calls answered (billed)", &|r| {
        ratio(r.compromised.fraud_answered, r.compromised.fraud_planned)
    });
    row("fraudulent INVITEs reaching Kamailio", &|r| {
        reach(&r.compromised.fraud_reaching_kamailio)
    });
    for rule in DENIED_RULES {
        row(&format!("  {rule} (to deny)"), &|r| {
            r.compromised
                .fraud_by_rule
                .get(rule)
                .map_or("-".to_string(), reach)
        });
    }
    row("  international (to budget, 3/min)", &|r| {
        r.compromised
            .fraud_by_rule
            .get("international")
            .map_or("-".to_string(), reach)
    });
    let class = |r: &LabRun, c: &str| r.kamailio.by_source.get(c).copied().unwrap_or(0);
    row("requests reaching Kamailio", &|r| {
        r.kamailio.requests.to_string()
    });
    row("  from the carrier", &|r| class(r, "carrier").to_string());
    row("  from the phone", &|r| class(r, "phone").to_string());
    row("  from the flood spoofing the phone", &|r| {
        class(r, "phone-spoofed").to_string()
    });
    row("  from the compromised phone", &|r| {
        class(r, "compromised").to_string()
    });
    row("  from svmap/svwar (trunk)", &|r| {
        class(r, "scanner").to_string()
    });
    row("  from svwar (access)", &|r| {
        class(r, "enumerator").to_string()
    });
    row("  from svcrack (access)", &|r| {
        class(r, "cracker").to_string()
    });
    row("  from the spoofed flood", &|r| {
        class(r, "flood").to_string()
    });
    if runs.iter().any(|r| r.fresh_phone.is_some()) {
        row("  from the fresh phone", &|r| {
            class(r, "fresh-phone").to_string()
        });
    }
    row("  unknown sources on the trunk", &|r| {
        r.kamailio.trunk_from_unknown.to_string()
    });
    row("Kamailio CPU seconds", &|r| {
        format!("{:.2}", r.kamailio.cpu_seconds)
    });
    row("  datagrams lost in its full socket buffers", &|r| {
        thousands(r.kamailio.udp_receive_buffer_errors)
    });
    row("flood sent by trafgen (packets)", &|r| {
        format!("{} in {:.1} s", thousands(r.flood.packets), r.flood.seconds)
    });
    row(
        "  per second",
        &|r| thousands(r.flood.rate().round() as u64),
    );
    row("  lost on the way to the SBC", &|r| {
        thousands(r.flood.lost_on_the_way)
    });
    row("sipguard drops (or would-drops)", &|r| {
        r.sipguard
            .as_ref()
            .map_or("-".to_string(), |s| (s.dropped + s.would_drop).to_string())
    });
    row("sipguard bans", &|r| {
        r.sipguard
            .as_ref()
            .map_or("-".to_string(), |s| s.bans.len().to_string())
    });
    row("flood refused: trunk / access / phone's", &|r| {
        r.sipguard.as_ref().map_or("-".to_string(), |s| {
            format!(
                "{} / {} / {}",
                s.flood_trunk_refused, s.flood_access_refused, s.flood_phone_refused
            )
        })
    });
    // Drops per reason from sipguard's counters (what /metrics serves as sipguard_packets_total),
    // dropped and would-drop together.
    let mut reasons: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let Some(sipguard) = &run.sipguard else {
            continue;
        };
        for (key, packets) in &sipguard.counters {
            let Some(reason) = key
                .strip_suffix("/dropped")
                .or_else(|| key.strip_suffix("/would_drop"))
            else {
                continue;
            };
            let cells = reasons
                .entry(reason.to_string())
                .or_insert_with(|| vec![None; runs.len()]);
            *cells[i].get_or_insert(0) += packets;
        }
    }
    if !reasons.is_empty() {
        rows.push((
            "sipguard drops per zone/reason (pkts)".to_string(),
            vec![String::new(); runs.len()],
        ));
    }
    for (reason, cells) in &reasons {
        rows.push((
            format!("  {reason}"),
            cells
                .iter()
                .zip(runs)
                .map(|(cell, run)| match (cell, &run.sipguard) {
                    (_, None) => "-".to_string(),
                    (None, Some(_)) => "0".to_string(),
                    (Some(packets), Some(_)) => packets.to_string(),
                })
                .collect(),
        ));
    }
    // Drops per reason, rule (when the event log names one) and source, from the drop events:
    // "events (+ drops of the same sources whose events were suppressed)".
    let mut rules: BTreeMap<String, Vec<Option<(u64, u64)>>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let Some(sipguard) = &run.sipguard else {
            continue;
        };
        for tally in &sipguard.drop_events {
            let name = match &tally.rule {
                Some(rule) => format!(
                    "  {}/{} [{rule}] {}",
                    tally.zone,
                    tally.reason,
                    source_label(&tally.source)
                ),
                None => format!(
                    "  {}/{} {}",
                    tally.zone,
                    tally.reason,
                    source_label(&tally.source)
                ),
            };
            let cells = rules.entry(name).or_insert_with(|| vec![None; runs.len()]);
            let cell = cells[i].get_or_insert((0, 0));
            cell.0 += tally.events;
            cell.1 += tally.suppressed_before;
        }
    }
    if !rules.is_empty() {
        rows.push((
            "drop events per reason [rule] source".to_string(),
            vec![String::new(); runs.len()],
        ));
    }
    for (name, cells) in rules {
        rows.push((
            name,
            cells
                .iter()
                .zip(runs)
                .map(|(cell, run)| match (cell, &run.sipguard) {
                    (_, None) => "-".to_string(),
                    (None, Some(_)) => "0".to_string(),
                    (Some((events, 0)), Some(_)) => events.to_string(),
                    (Some((events, suppressed)), Some(_)) => format!("{events} (+{suppressed})"),
                })
                .collect(),
        ));
    }
    let width = rows
        .iter()
        .map(|(name, _)| name.len() + 2)
        .fold(34, usize::max);
    let column = rows
        .iter()
        .flat_map(|(_, values)| values.iter().map(|v| v.len() + 2))
        .chain(runs.iter().map(|run| column_name(run).len() + 2))
        .fold(22, usize::max);
    let _ = write!(out, "{:<width$}", "");
    for run in runs {
        let _ = write!(out, "{:>column$}", column_name(run));
    }
    out.push('\n');
    for (name, values) in rows {
        let _ = write!(out, "{name:<width$}");
        for value in values {
            let _ = write!(out, "{value:>column$}");
        }
        out.push('\n');
    }
    if let Some(enforce) = runs.iter().find(|r| r.protection == Protection::Enforce)
        && let Some(sipguard) = &enforce.sipguard
    {
        let _ = writeln!(out, "\nbans ({}):", column_name(enforce));
        for ban in &sipguard.bans {
            let _ = writeln!(
                out,
                "  {:<18} {:<14} banned at {} ({} packets dropped since)",
                ban.source,
                ban.reason,
                sipguard::time::format_time(ban.banned_at_unix),
                ban.hits
            );
        }
        let _ = writeln!(
            out,
            "drop events: {} emitted, {} suppressed, {} lost; naming the carrier or the phone: \
             {}; attacker requests reaching Kamailio after their ban: {}",
            sipguard.events_emitted,
            sipguard.events_suppressed,
            sipguard.events_lost,
            sipguard.legit_drop_events,
            sipguard.attacker_requests_after_ban
        );
        for tally in sipguard
            .drop_events
            .iter()
            .filter(|t| !t.numbers.is_empty())
        {
            let _ = writeln!(
                out,
                "numbers named by {}/{} [{}] drops of the {}: {}",
                tally.zone,
                tally.reason,
                tally.rule.as_deref().unwrap_or("-"),
                source_label(&tally.source),
                tally.numbers.iter().cloned().collect::<Vec<_>>().join(" ")
            );
        }
        let _ = writeln!(out, "SIPVicious said:");
        for tool in &enforce.tools {
            let _ = writeln!(
                out,
                "  {:<15} from {}: {}",
                tool.tool, tool.source, tool.result
            );
        }
        let _ = writeln!(
            out,
            "files: {} (kamailio.err, events.jsonl, sipp *.csv)",
            enforce.work_dir.display()
        );
    }
    for run in runs
        .iter()
        .filter(|r| !r.compromised.unmatched_numbers.is_empty())
    {
        let _ = writeln!(
            out,
            "\n{}: INVITEs from the compromised phone with numbers on neither list (as Kamailio \
             logged them, with packets): {:?}",
            run.protection.name(),
            run.compromised.unmatched_numbers
        );
    }
    for run in runs.iter().filter(|r| !r.hints.is_empty()) {
        let _ = writeln!(
            out,
            "\nThe {} lab is still up. Look around:",
            run.protection.name()
        );
        for hint in &run.hints {
            let _ = writeln!(out, "  {hint}");
        }
    }
    out
}

/// The access gate's summary: the same flood with the gate open and shut (issue 17's target:
/// flood packets reaching Kamailio while shut at most 1% of those while open; every phone
/// registration and call, and every carrier call, completed; a new phone registers).
pub fn render_gate(open: &LabRun, shut: &LabRun) -> String {
    let mut out = String::new();
    let flood = |r: &LabRun| r.kamailio.by_source.get("flood").copied().unwrap_or(0);
    let sent = |r: &LabRun| r.flood_sent.values().sum::<u64>();
    let (open_in, shut_in) = (flood(open), flood(shut));
    let percent = |part: f64, whole: f64| {
        if whole > 0.0 {
            format!("{:.3}%", part * 100.0 / whole)
        } else {
            "-".to_string()
        }
    };
    let share = |r: &LabRun| flood(r) as f64 / sent(r).max(1) as f64;
    let _ = writeln!(
        out,
        "The access gate under the spoofed flood (issue 17 target: flood reaching Kamailio with \
         the gate shut <= 1% of the same flood with it open):"
    );
    for (name, r) in [("gate open", open), ("attack mode on", shut)] {
        let _ = writeln!(
            out,
            "  {name:<15} flood packets reaching Kamailio: {} of {} sent in {:.1} s ({}/s; {} \
             of what was sent)",
            thousands(flood(r)),
            thousands(sent(r)),
            r.flood.seconds,
            thousands(r.flood.rate().round() as u64),
            percent(flood(r) as f64, sent(r) as f64),
        );
    }
    let met = shut_in * 100 <= open_in;
    let _ = writeln!(
        out,
        "  shut / open: {} of the packets ({}), {} per packet sent: target {}",
        percent(shut_in as f64, open_in as f64),
        if open_in == 0 {
            "nothing reached Kamailio with the gate open".to_string()
        } else {
            format!("{shut_in} / {open_in}")
        },
        percent(share(shut), share(open)),
        if met { "met" } else { "missed" }
    );
    let methods = |r: &LabRun| {
        let list: Vec<String> = r
            .kamailio
            .by_source_method
            .iter()
            .filter_map(|(key, n)| Some(format!("{} {n}", key.strip_prefix("flood/")?)))
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "  flood reaching Kamailio by method: open {}; shut {}",
        methods(open),
        methods(shut)
    );
    let unverified = |r: &LabRun| {
        r.sipguard.as_ref().map_or(0, |s| {
            s.counters
                .iter()
                .filter(|(key, _)| key.starts_with("access/unverified/"))
                .map(|(_, n)| n)
                .sum::<u64>()
        })
    };
    let _ = writeln!(
        out,
        "  dropped as access/unverified: open {}, shut {}; access/new_source_limited during \
         the flood: open {}, shut {}; lost in Kamailio's full socket buffers: open {}, shut {}",
        thousands(unverified(open)),
        thousands(unverified(shut)),
        thousands(open.sipguard.as_ref().map_or(0, |s| s.flood_access_refused)),
        thousands(shut.sipguard.as_ref().map_or(0, |s| s.flood_access_refused)),
        thousands(open.kamailio.udp_receive_buffer_errors),
        thousands(shut.kamailio.udp_receive_buffer_errors),
    );
    for (name, r) in [("gate open", open), ("attack mode on", shut)] {
        let fresh = r.fresh_phone.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {name:<15} phone registrations {}, phone calls {}, carrier calls {}, compromised \
             phone's legitimate calls {}; fresh phone: {}",
            ratio(
                r.phone_registrations.successful,
                r.phone_registrations.created
            ),
            ratio(r.phone_calls.successful, r.phone_calls.created),
            ratio(r.carrier_calls.successful, r.carrier_calls.created),
            ratio(r.compromised.legit_completed, r.compromised.legit_planned),
            match (fresh.registration.successful, fresh.seconds_to_register) {
                (1.., Some(seconds)) => format!(
                    "registered, {} from its first REGISTER to the 200 OK ({} REGISTERs \
                     reached Kamailio)",
                    duration(seconds),
                    fresh.registers_reaching_kamailio
                ),
                (1.., None) => "registered (no response time recorded)".to_string(),
                (0, _) => format!(
                    "NOT registered within {} s ({} REGISTERs reached Kamailio)",
                    super::FRESH_PHONE_TIMEOUT_MS / 1000,
                    fresh.registers_reaching_kamailio
                ),
            }
        );
    }
    out
}
