//! Settings that fall back to their defaults: `ipv6_prefix`, `[bans]`, `[events]`,
//! `[auth_failures]` and `[verified]`.
//! (`mode` and `fragments` need no check beyond the document's: see [`super::doc`].)

use std::time::Duration;

use toml::Spanned;

use super::{
    ParseContext,
    doc::{AuthFailuresDoc, BansDoc, DurationDoc, EventsDoc, VerifiedDoc},
};
use crate::policy::{BanSettings, DEFAULT_IPV6_PREFIX, EventSettings, Feedback};

/// Parses `90`, `90s`, `15m`, `2h`, `1d` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 30s, 15m, 2h, 1d)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3600),
        "d" => value.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "'{text}' is not a duration (e.g. 30s, 15m, 2h, 1d)"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// Seconds, or text for [`parse_duration`].
pub(super) fn read_duration(doc: &DurationDoc) -> Result<Duration, String> {
    match doc {
        DurationDoc::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
        DurationDoc::Text(text) => parse_duration(text),
    }
}

impl ParseContext<'_> {
    /// IPv6 sources share budgets and bans per prefix of this length, so it must be one.
    pub(super) fn read_ipv6_prefix(&mut self, prefix: Option<&Spanned<u8>>) -> u8 {
        match prefix {
            Some(prefix) if (1..=128).contains(prefix.get_ref()) => *prefix.get_ref(),
            Some(prefix) => {
                self.report_at(prefix.span(), "ipv6_prefix must be between 1 and 128");
                DEFAULT_IPV6_PREFIX
            }
            None => DEFAULT_IPV6_PREFIX,
        }
    }

    /// `[bans]`: what it leaves out, or gets wrong, keeps its default.
    pub(super) fn read_bans(&mut self, doc: Option<&BansDoc>) -> BanSettings {
        let mut bans = BanSettings::default();
        let Some(doc) = doc else {
            return bans;
        };
        if let Some(threshold) = doc.threshold {
            bans.threshold = threshold;
        }
        for (field, value, slot) in [
            ("window", &doc.window, &mut bans.window),
            ("ttl", &doc.ttl, &mut bans.ttl),
        ] {
            if let Some(duration) = value
                .as_ref()
                .and_then(|value| self.read_ban_duration(field, value))
            {
                *slot = duration;
            }
        }
        bans
    }

    fn read_ban_duration(&mut self, field: &str, value: &Spanned<DurationDoc>) -> Option<Duration> {
        self.read_positive_duration(&format!("bans.{field}"), value, false)
    }

    /// A duration, longer than 0 unless `zero_ok`; `None` (reported) when it is not one.
    fn read_positive_duration(
        &mut self,
        name: &str,
        value: &Spanned<DurationDoc>,
        zero_ok: bool,
    ) -> Option<Duration> {
        match read_duration(value.get_ref()) {
            Ok(duration) if duration.is_zero() && !zero_ok => {
                self.report_at(value.span(), format!("{name} must be longer than 0"));
                None
            }
            Ok(duration) => Some(duration),
            Err(message) => {
                self.report_at(value.span(), format!("{name}: {message}"));
                None
            }
        }
    }

    /// `[auth_failures]` and `[verified]`: what they leave out, or get wrong, keeps its
    /// default. Both act on the access zone only.
    pub(super) fn read_feedback(
        &mut self,
        auth: Option<&AuthFailuresDoc>,
        verified: Option<&VerifiedDoc>,
    ) -> Feedback {
        let mut feedback = Feedback::default();
        if let Some(doc) = auth {
            if let Some(threshold) = doc.threshold {
                feedback.auth_threshold = threshold;
            }
            for (field, value, slot, zero_ok) in [
                ("window", &doc.window, &mut feedback.auth_window, false),
                ("ttl", &doc.ttl, &mut feedback.auth_ttl, false),
                ("grace", &doc.grace, &mut feedback.auth_grace, true),
            ] {
                if let Some(duration) = value.as_ref().and_then(|value| {
                    self.read_positive_duration(&format!("auth_failures.{field}"), value, zero_ok)
                }) {
                    *slot = duration;
                }
            }
        }
        if let Some(doc) = verified {
            if let Some(enabled) = doc.enabled {
                feedback.verified = enabled;
            }
            if let Some(class) = &doc.class {
                self.check_class_is_defined(class);
                feedback.verified_class = Some(class.get_ref().clone());
            }
            for (field, value, slot) in [
                (
                    "max_lifetime",
                    &doc.max_lifetime,
                    &mut feedback.verified_max_lifetime,
                ),
                (
                    "default_lifetime",
                    &doc.default_lifetime,
                    &mut feedback.verified_default_lifetime,
                ),
            ] {
                if let Some(duration) = value.as_ref().and_then(|value| {
                    self.read_positive_duration(&format!("verified.{field}"), value, false)
                }) {
                    *slot = duration;
                }
            }
        }
        feedback
    }

    /// `[events]`: what it leaves out, or gets wrong, keeps its default.
    pub(super) fn read_events(&mut self, doc: Option<&EventsDoc>) -> EventSettings {
        let mut events = EventSettings::default();
        let Some(doc) = doc else {
            return events;
        };
        for (field, value, slot) in [
            ("per_source", &doc.per_source, &mut events.per_source),
            ("total", &doc.total, &mut events.total),
        ] {
            if let Some(budget) = value
                .as_ref()
                .and_then(|value| self.read_budget(&format!("events.{field}"), value))
            {
                *slot = budget;
            }
        }
        events
    }
}
