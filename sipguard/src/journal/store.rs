//! The journal's files: `journal.jsonl` (one entry per line, appended with one write and
//! synced), `journal.1.jsonl` (the previous file, after rotation), `next-id`, and `pending.jsonl`
//! (the change in progress). Only the holder of the interface's lock writes them.

use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::{Entry, JournalError, io_error};

/// `journal.jsonl` is rotated once it is this long: the journal keeps between one and two of it.
pub const ROTATE_BYTES: u64 = 16 << 20;

/// The journal of one interface.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn of(target: &crate::pins::Target) -> Journal {
        Journal {
            dir: super::dir_of(target),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    fn rotated_path(&self) -> PathBuf {
        self.dir.join("journal.1.jsonl")
    }

    pub(super) fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.jsonl")
    }

    fn next_id_path(&self) -> PathBuf {
        self.dir.join("next-id")
    }

    pub(super) fn create_dir(&self) -> Result<(), JournalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_error(&self.dir))
    }

    /// Takes the next entry id for good (an id is never given twice, even to a change that
    /// is then interrupted).
    pub(super) fn allocate_id(&self) -> Result<u64, JournalError> {
        let path = self.next_id_path();
        let stored = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().ok(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error(&path)(error)),
        };
        let id = match stored {
            Some(id) => id,
            // Lost or never written: after every id in the files.
            None => {
                self.entries()?
                    .iter()
                    .map(|entry| entry.id)
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        write_atomically(&path, format!("{}\n", id + 1).as_bytes())?;
        Ok(id)
    }

    /// Appends one entry as one line, synced before returning.
    pub(super) fn append(&self, entry: &Entry) -> Result<(), JournalError> {
        self.create_dir()?;
        let path = self.path();
        let mut line = serde_json::to_vec(entry).map_err(|error| JournalError::Corrupt {
            path: path.clone(),
            message: error.to_string(),
        })?;
        line.push(b'\n');
        if fs::metadata(&path).is_ok_and(|meta| meta.len() + line.len() as u64 > ROTATE_BYTES) {
            fs::rename(&path, self.rotated_path()).map_err(io_error(&path))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        cut_torn_tail(&mut file).map_err(io_error(&path))?;
        file.write_all(&line).map_err(io_error(&path))?;
        file.sync_data().map_err(io_error(&path))
    }

    /// Every entry, oldest first. A line that does not parse (a torn write at the end, which
    /// `append` never leaves) is skipped.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        let mut entries = Vec::new();
        for path in [self.rotated_path(), self.path()] {
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(&path)(error)),
            };
            entries.extend(
                text.split_terminator('\n')
                    .filter_map(|line| serde_json::from_str::<Entry>(line).ok()),
            );
        }
        Ok(entries)
    }
}

/// A file that does not end in a newline lost the end of its last line: cut it off, so the
/// next line starts clean.
fn cut_torn_tail(file: &mut fs::File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let keep = text
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    file.set_len(keep as u64)
}

/// Replaces a small file as a whole: a crash leaves the old or the new content.
pub(super) fn write_atomically(path: &Path, content: &[u8]) -> Result<(), JournalError> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(content).map_err(io_error(&temporary))?;
    file.sync_data().map_err(io_error(&temporary))?;
    fs::rename(&temporary, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        fs::write(&path, b"{\"a\":1}\n{\"torn").unwrap();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        cut_torn_tail(&mut file).unwrap();
        file.write_all(b"{\"b\":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }
}
