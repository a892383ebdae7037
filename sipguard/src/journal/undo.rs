//! `undo`: writing back what journaled changes replaced, newest first, all or nothing.
//!
//! Every write of the selected entries is checked against the kernel before anything is
//! written: the entry must still be what the change left (or already what it found: then
//! there is nothing to do). Anything else means a later change, or the data plane, changed it
//! since, and the undo is refused with the entry and the write that conflict.

use std::{collections::HashMap, ops::Range};

use sipguard_common::abi::{self, map_name};

use super::{Change, Entry, JournalError, Recorder, generation_scoped, record::matches};

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("no journal entry #{0} (see `sipguard history`; old entries rotate out)")]
    NoSuchEntry(u64),
    #[error("no journaled change since {0}")]
    NothingSince(String),
    #[error(
        "cannot undo #{id} ({action}): {what} changed since{by}; nothing was changed. \
         Undo the later change first, or together with `sipguard undo --since`"
    )]
    Conflict {
        id: u64,
        action: String,
        what: String,
        by: String,
    },
}

/// One write of the undo, in order.
struct Step {
    map: String,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// A value with what the comparison ignores zeroed: the ban's hit counters (the data plane
/// counts packets of a banned source), the policy's manual-ban flag (derived from the ban
/// table: `undo` recomputes it) and, unless `strict`, the policy's serial (every change bumps
/// it; an undo restores it when nothing changed since, and bumps it otherwise).
fn masked(map: &str, value: &[u8], strict: bool) -> Vec<u8> {
    let mut value = value.to_vec();
    let mut zero = |range: Range<usize>| {
        if let Some(bytes) = value.get_mut(range) {
            bytes.fill(0);
        }
    };
    match map {
        map_name::BANS => {
            zero(field(std::mem::offset_of!(abi::Ban, last_seen_ns), 8));
            zero(field(std::mem::offset_of!(abi::Ban, hits), 8));
        }
        map_name::POLICY => {
            if !strict {
                zero(serial_range());
            }
            let flags = std::mem::offset_of!(abi::Policy, header)
                + std::mem::offset_of!(abi::PolicyHeader, flags);
            if let Some(byte) = value.get_mut(flags) {
                *byte &= !abi::policy_flags::MANUAL_BANS;
            }
        }
        _ => {}
    }
    value
}

const fn field(offset: usize, len: usize) -> Range<usize> {
    offset..offset + len
}

/// The serial of the policy value: every change widens its journaled range to all 8 bytes.
pub(super) fn serial_range() -> Range<usize> {
    let offset =
        std::mem::offset_of!(abi::Policy, header) + std::mem::offset_of!(abi::PolicyHeader, serial);
    offset..offset + 8
}

/// Whether `current` is still what `change` left, over the bytes it wrote and apart from the
/// bytes [`masked`] ignores.
fn still_after(map: &str, change: &Change, current: Option<&[u8]>, strict: bool) -> bool {
    match change {
        Change::Set { after, .. } => match (after, current) {
            (Some(after), Some(current)) => {
                masked(map, &after.0, strict) == masked(map, current, strict)
            }
            (None, None) => true,
            _ => false,
        },
        Change::Patch { size, .. } => {
            let Some(current) = current.filter(|value| value.len() == *size) else {
                return false;
            };
            let mut expected = current.to_vec();
            apply_patches(change, &mut expected, true, &[]);
            masked(map, &expected, strict) == masked(map, current, strict)
        }
    }
}

/// Writes the `after` (or `before`) bytes of a patch into `value`, skipping `skip`.
fn apply_patches(change: &Change, value: &mut [u8], after: bool, skip: &[Range<usize>]) {
    let Change::Patch { ranges, .. } = change else {
        return;
    };
    for patch in ranges {
        let bytes = if after { &patch.after } else { &patch.before };
        for (at, byte) in (patch.offset..).zip(&bytes.0) {
            if !skip.iter().any(|range| range.contains(&at)) && at < value.len() {
                value[at] = *byte;
            }
        }
    }
}

/// The value to write back for `change`, given the value now.
fn restored(map: &str, change: &Change, current: Option<&[u8]>) -> Option<Vec<u8>> {
    match change {
        Change::Set { before, .. } => before.as_ref().map(|hex| hex.0.clone()),
        Change::Patch { .. } => {
            let mut value = current?.to_vec();
            let serial = if map == map_name::POLICY {
                vec![serial_range()]
            } else {
                Vec::new()
            };
            let untouched = {
                let mut expected = value.clone();
                apply_patches(change, &mut expected, true, &[]);
                masked(map, &expected, true) == masked(map, &value, true)
            };
            apply_patches(change, &mut value, false, &serial);
            if let Some(range) = serial.first()
                && touches(change, range)
            {
                if untouched {
                    apply_patches(change, &mut value, false, &[]);
                } else {
                    let now =
                        u64::from_ne_bytes(value[range.clone()].try_into().unwrap_or_default());
                    value[range.clone()].copy_from_slice(&(now + 1).to_ne_bytes());
                }
            }
            Some(value)
        }
    }
}

fn touches(change: &Change, range: &Range<usize>) -> bool {
    match change {
        Change::Patch { ranges, .. } => ranges.iter().any(|patch| {
            patch.offset < range.end && range.start < patch.offset + patch.before.0.len()
        }),
        Change::Set { .. } => true,
    }
}

/// A change that replaced a whole generation (`apply`) is undone only if nothing at all was
/// changed in it since, serial included.
fn replaces_generation(entry: &Entry) -> bool {
    entry
        .writes
        .iter()
        .any(|write| write.map == map_name::ACTIVE)
}

/// The entries `undo ID` or `undo --since` selects, newest first.
pub fn select(
    entries: &[Entry],
    id: Option<u64>,
    since_unix: Option<u64>,
) -> Result<Vec<Entry>, UndoError> {
    let mut chosen: Vec<Entry> = match (id, since_unix) {
        (Some(id), _) => vec![
            entries
                .iter()
                .find(|entry| entry.id == id)
                .cloned()
                .ok_or(UndoError::NoSuchEntry(id))?,
        ],
        (None, Some(since)) => entries
            .iter()
            .filter(|entry| entry.unix >= since && !entry.writes.is_empty())
            .cloned()
            .collect(),
        (None, None) => Vec::new(),
    };
    if chosen.is_empty() {
        return Err(UndoError::NothingSince(crate::time::format_time(
            since_unix.unwrap_or_default(),
        )));
    }
    chosen.sort_by_key(|entry| std::cmp::Reverse(entry.id));
    Ok(chosen)
}

/// Checks every write of `chosen` (newest first) against the kernel and, if none conflicts,
/// writes back what they replaced through `recorder` (the undo is itself journaled).
/// `journal` is every entry, to name the later change behind a conflict.
pub fn undo(
    recorder: &mut Recorder,
    chosen: &[Entry],
    journal: &[Entry],
) -> Result<usize, UndoError> {
    let mut overlay: HashMap<(String, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
    let mut steps = Vec::new();
    let active_key = 0u32.to_ne_bytes().to_vec();
    for entry in chosen {
        if entry
            .writes
            .iter()
            .any(|write| generation_scoped(&write.map))
        {
            let running = current(recorder, &mut overlay, map_name::ACTIVE, &active_key)?
                .and_then(|bytes| bytes.try_into().ok())
                .map(u32::from_ne_bytes);
            let left = entry
                .writes
                .iter()
                .rev()
                .find(|write| write.map == map_name::ACTIVE)
                .and_then(|write| match &write.change {
                    Change::Set {
                        after: Some(after), ..
                    } => after.0.clone().try_into().ok(),
                    _ => None,
                })
                .map_or(entry.generation, u32::from_ne_bytes);
            if running != Some(left) {
                return Err(conflict(
                    entry,
                    "the running policy generation",
                    journal,
                    |later| {
                        later
                            .writes
                            .iter()
                            .any(|write| write.map == map_name::ACTIVE)
                    },
                ));
            }
        }
        let strict = replaces_generation(entry);
        for write in entry.writes.iter().rev() {
            let now = current(recorder, &mut overlay, &write.map, &write.key.0)?;
            let value = if still_after(&write.map, &write.change, now.as_deref(), strict) {
                restored(&write.map, &write.change, now.as_deref())
            } else if matches(&write.change, now.as_deref(), false) {
                continue;
            } else {
                let what = super::describe_write(write);
                return Err(conflict(entry, &what, journal, |later| {
                    later
                        .writes
                        .iter()
                        .any(|other| other.map == write.map && other.key == write.key)
                }));
            };
            overlay.insert((write.map.clone(), write.key.0.clone()), value.clone());
            steps.push(Step {
                map: write.map.clone(),
                key: write.key.0.clone(),
                value,
            });
        }
    }
    for step in &steps {
        recorder.put(&step.map, &step.key, step.value.as_deref())?;
    }
    Ok(steps.len())
}

fn current(
    recorder: &mut Recorder,
    overlay: &mut HashMap<(String, Vec<u8>), Option<Vec<u8>>>,
    map: &str,
    key: &[u8],
) -> Result<Option<Vec<u8>>, JournalError> {
    if let Some(value) = overlay.get(&(map.to_string(), key.to_vec())) {
        return Ok(value.clone());
    }
    recorder.current(map, key)
}

fn conflict(
    entry: &Entry,
    what: &str,
    journal: &[Entry],
    touched: impl Fn(&Entry) -> bool,
) -> UndoError {
    let by = journal
        .iter()
        .filter(|later| later.id > entry.id && touched(later))
        .map(|later| format!("#{} ({})", later.id, later.action))
        .collect::<Vec<_>>();
    UndoError::Conflict {
        id: entry.id,
        action: entry.action.clone(),
        what: what.to_string(),
        by: if by.is_empty() {
            " (not by a journaled change: the data plane, or a change outside sipguard)".into()
        } else {
            format!(" by {}", by.join(", "))
        },
    }
}
