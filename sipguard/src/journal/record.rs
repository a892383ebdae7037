//! Recording one change as it is made, and recovering one a dead controller left behind.

use std::{collections::HashMap, fs, io::Write as _, os::unix::fs::OpenOptionsExt as _};

use super::{
    Change, Entry, Hex, Journal, JournalError, Outcome, Patch, Who, io_error, raw::RawMap,
};
use crate::{
    pins::Target,
    time::{now_unix, rfc3339_micros},
};

/// Values longer than this are journaled as the ranges that changed.
const WHOLE_VALUE_BYTES: usize = 512;
/// Changed bytes closer than this are journaled as one range. 1: only adjacent ones, so a
/// range never holds a byte the change did not change (`undo` compares every byte of it).
const MERGE_GAP: usize = 1;

/// A change being recorded: every write is noted (with the value it replaces) in the pending
/// file before it is made.
pub struct Recorder {
    journal: Journal,
    target: Target,
    entry: Entry,
    pending: fs::File,
    maps: HashMap<String, RawMap>,
}

impl Recorder {
    pub fn begin(
        target: &Target,
        action: &str,
        who: Who,
        generation: u32,
    ) -> Result<Recorder, JournalError> {
        let journal = Journal::of(target);
        journal.create_dir()?;
        let id = journal.allocate_id()?;
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let entry = Entry {
            id,
            time: rfc3339_micros(unix_ns),
            unix: now_unix(),
            who,
            action: action.to_string(),
            interface: target.label(),
            generation,
            outcome: Outcome::Done,
            error: None,
            undoes: Vec::new(),
            writes: Vec::new(),
        };
        let path = journal.pending_path();
        let mut pending = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut header = serde_json::to_vec(&entry).map_err(|error| JournalError::Corrupt {
            path: path.clone(),
            message: error.to_string(),
        })?;
        header.push(b'\n');
        pending.write_all(&header).map_err(io_error(&path))?;
        pending.sync_data().map_err(io_error(&path))?;
        Ok(Recorder {
            journal,
            target: target.clone(),
            entry,
            pending,
            maps: HashMap::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.entry.id
    }

    pub fn set_undoes(&mut self, ids: Vec<u64>) {
        self.entry.undoes = ids;
    }

    fn map(&mut self, name: &str) -> Result<&mut RawMap, JournalError> {
        if !self.maps.contains_key(name) {
            let map = RawMap::open(name, &self.target.map_pin(name))?;
            self.maps.insert(name.to_string(), map);
        }
        Ok(self.maps.get_mut(name).expect("just opened"))
    }

    /// The value under `key` in `map` now (exact key, also for tries).
    pub fn current(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        self.map(map)?.get(key)
    }

    /// Notes that `map[key]` is about to become `after` (`None`: removed). Call it before the
    /// write: a write the journal does not know of must never reach the kernel.
    pub fn note(
        &mut self,
        map: &str,
        key: &[u8],
        after: Option<&[u8]>,
    ) -> Result<(), JournalError> {
        let before = self.map(map)?.get(key)?;
        if before.as_deref() == after {
            return Ok(());
        }
        let write = super::Write {
            map: map.to_string(),
            key: Hex(key.to_vec()),
            change: change_of(map, before, after.map(<[u8]>::to_vec)),
        };
        let mut line = serde_json::to_vec(&write).map_err(|error| JournalError::Corrupt {
            path: self.journal.pending_path(),
            message: error.to_string(),
        })?;
        line.push(b'\n');
        // One write(2) per line: a kill leaves whole lines and at most one torn last line.
        self.pending
            .write_all(&line)
            .map_err(io_error(&self.journal.pending_path()))?;
        self.map(map)?.noted(key, after.is_some());
        self.entry.writes.push(write);
        Ok(())
    }

    /// Writes `map[key]` (recorded), for writes without a typed handle (`undo`).
    pub fn put(&mut self, map: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), JournalError> {
        self.note(map, key, value)?;
        self.map(map)?.put(key, value)
    }

    /// Ends the change: its entry goes into the journal (unless it wrote nothing).
    pub fn finish(mut self, error: Option<String>) -> Result<Option<Entry>, JournalError> {
        let pending = self.journal.pending_path();
        if self.entry.writes.is_empty() {
            fs::remove_file(&pending).map_err(io_error(&pending))?;
            return Ok(None);
        }
        if error.is_some() {
            self.entry.outcome = Outcome::Failed;
            self.entry.error = error;
        }
        self.journal.append(&self.entry)?;
        fs::remove_file(&pending).map_err(io_error(&pending))?;
        Ok(Some(self.entry))
    }
}

fn change_of(map: &str, before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> Change {
    match (before, after) {
        (Some(before), Some(after)) if before.len() > WHOLE_VALUE_BYTES => {
            // The policy's serial goes into the journal whole, for undo to compare and restore.
            let serial = super::undo::serial_range();
            let whole = (map == sipguard_common::abi::map_name::POLICY
                && before.get(serial.clone()) != after.get(serial.clone()))
            .then_some(serial);
            Change::Patch {
                size: before.len(),
                ranges: diff(&before, &after, whole),
            }
        }
        (before, after) => Change::Set {
            before: before.map(Hex),
            after: after.map(Hex),
        },
    }
}

/// The ranges where `before` and `after` (of the same length) differ.
/// Bytes in `whole` count as differing.
pub(super) fn diff(
    before: &[u8],
    after: &[u8],
    whole: Option<std::ops::Range<usize>>,
) -> Vec<Patch> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let differs = |at: &usize| {
        before[*at] != after[*at] || whole.as_ref().is_some_and(|range| range.contains(at))
    };
    for at in (0..before.len()).filter(differs) {
        match ranges.last_mut() {
            Some((_, end)) if at - *end < MERGE_GAP => *end = at + 1,
            _ => ranges.push((at, at + 1)),
        }
    }
    ranges
        .into_iter()
        .map(|(start, end)| Patch {
            offset: start,
            before: Hex(before[start..end].to_vec()),
            after: Hex(after[start..end].to_vec()),
        })
        .collect()
}

/// Whether `current` (the value in the kernel now) is what `change` left (`after`) or found
/// (`before`), over the bytes the change covers.
pub(super) fn matches(change: &Change, current: Option<&[u8]>, after: bool) -> bool {
    match change {
        Change::Set {
            before: b,
            after: a,
        } => {
            let expected = if after { a } else { b };
            expected.as_ref().map(|hex| hex.0.as_slice()) == current
        }
        Change::Patch { size, ranges } => current.is_some_and(|value| {
            value.len() == *size
                && ranges.iter().all(|patch| {
                    let expected = if after { &patch.after } else { &patch.before };
                    value.get(patch.offset..patch.offset + expected.0.len())
                        == Some(expected.0.as_slice())
                })
        }),
    }
}

/// Turns the pending file of a controller that died in the middle of a change into an entry
/// marked `interrupted`, holding the writes that reached the kernel. Called with the lock held,
/// before anything else is changed.
pub(crate) fn recover(target: &Target) -> Result<Option<Entry>, JournalError> {
    let journal = Journal::of(target);
    let path = journal.pending_path();
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path)(error)),
    };
    let mut lines = text.split(|byte| *byte == b'\n');
    let header = lines
        .next()
        .and_then(|line| serde_json::from_slice::<Entry>(line).ok());
    let Some(mut entry) = header else {
        // Died before the change began: nothing was written.
        fs::remove_file(&path).map_err(io_error(&path))?;
        return Ok(None);
    };
    if journal.entries()?.iter().any(|done| done.id == entry.id) {
        // Died after the entry was journaled.
        fs::remove_file(&path).map_err(io_error(&path))?;
        return Ok(None);
    }
    let mut maps: HashMap<String, RawMap> = HashMap::new();
    // A torn last line is a write that was never made (it is noted before it is made).
    for write in lines.filter_map(|line| serde_json::from_slice::<super::Write>(line).ok()) {
        if !maps.contains_key(&write.map) {
            let map = RawMap::open(&write.map, &target.map_pin(&write.map))?;
            maps.insert(write.map.clone(), map);
        }
        let current = maps
            .get_mut(&write.map)
            .expect("opened")
            .get(&write.key.0)?;
        let made = !matches(&write.change, current.as_deref(), false)
            || matches(&write.change, current.as_deref(), true);
        if made {
            entry.writes.push(write);
        }
    }
    entry.outcome = Outcome::Interrupted;
    entry.error = Some("the controller stopped in the middle of this change".into());
    if !entry.writes.is_empty() {
        journal.append(&entry)?;
    }
    fs::remove_file(&path).map_err(io_error(&path))?;
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_only_changed_bytes_and_the_forced_range() {
        let before = vec![0u8; 64];
        let mut after = before.clone();
        after[3] = 1;
        after[4] = 1;
        after[40] = 2;
        let ranges = diff(&before, &after, None);
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            (ranges[0].offset, ranges[0].after.0.clone()),
            (3, vec![1, 1])
        );
        assert_eq!((ranges[1].offset, ranges[1].after.0.clone()), (40, vec![2]));
        let forced = diff(&before, &after, Some(8..16));
        assert_eq!(forced.len(), 3);
        assert_eq!((forced[1].offset, forced[1].after.0.len()), (8, 8));
        let change = Change::Patch { size: 64, ranges };
        assert!(matches(&change, Some(&after), true));
        assert!(matches(&change, Some(&before), false));
        assert!(!matches(&change, Some(&before), true));
        assert!(!matches(&change, None, true));
    }
}
