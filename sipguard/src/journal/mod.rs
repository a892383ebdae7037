//! The journal of an interface: every change made through sipguard (CLI and API) to its live
//! state, with the exact bytes before and after of every map entry the change wrote. `sipguard
//! history` shows it, `sipguard undo` writes the bytes before back.
//!
//! Recording happens where the writes happen ([`crate::state::LiveState`]): each write is
//! first appended to a pending file (with the value it replaces), then made, and the finished
//! change becomes one line of `journal.jsonl`. A controller killed in the middle leaves the
//! pending file; the next command on the interface turns it into an entry marked
//! `interrupted` with the writes that reached the kernel, so the journal never holds half a
//! line and never misses a write.
//!
//! Where: `<journal-dir>/<iface>[@netns]/` (default `/var/lib/sipguard/journal`, so it
//! survives restarts and reboots), with `journal.jsonl` rotated to `journal.1.jsonl` at
//! [`store::ROTATE_BYTES`].

mod describe;
pub mod raw;
pub(crate) mod record;
mod store;
pub mod undo;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use serde::{Deserialize, Serialize};

pub use describe::describe_write;
pub use record::Recorder;
pub use store::{Journal, ROTATE_BYTES};

use crate::pins::DEFAULT_PIN_ROOT;

/// Default root of the journals.
pub const DEFAULT_JOURNAL_DIR: &str = "/var/lib/sipguard/journal";

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Sets where journals live (`--journal-dir`); the first call wins.
pub fn set_root(dir: &Path) {
    let _ = ROOT.set(dir.to_path_buf());
}

/// Where journals live: `--journal-dir`, else `SIPGUARD_JOURNAL_DIR`, else the default.
pub fn root() -> PathBuf {
    ROOT.get().cloned().unwrap_or_else(|| {
        std::env::var_os("SIPGUARD_JOURNAL_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_JOURNAL_DIR), PathBuf::from)
    })
}

/// The journal directory of an interface: `<root>/<label>`, or, for state under another pin
/// root than the default (tests, several instances), `<root>/<pin root as a name>/<label>`.
pub fn dir_of(target: &crate::pins::Target) -> PathBuf {
    let root = root();
    if target.pin_root() == Path::new(DEFAULT_PIN_ROOT) {
        return root.join(target.label());
    }
    let pins: String = target
        .pin_root()
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(pins).join(target.label())
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("map {map}: {source}")]
    Map {
        map: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}: {message}", path = .path.display())]
    Corrupt { path: PathBuf, message: String },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Who made a change and how.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    /// The user name (with `sudo`, the user who ran it), or `api <peer>` for the HTTP API.
    pub user: String,
    /// The command line, or the API call.
    pub command: String,
}

impl Who {
    /// This process: its real uid, the user behind `sudo` if any, and its command line.
    pub fn this_process() -> Who {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let name = user_name(uid).unwrap_or_else(|| uid.to_string());
        let user = match std::env::var("SUDO_USER") {
            Ok(sudo) if uid == 0 && !sudo.is_empty() => format!("{sudo} (sudo)"),
            _ => name,
        };
        Who {
            uid,
            user,
            command: std::env::args()
                .map(|arg| shell_word(&arg))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// `sipguard run` itself (its attack detector).
    pub fn daemon(what: String) -> Who {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        Who {
            uid,
            user: "sipguard run".into(),
            command: what,
        }
    }

    /// A call of the daemon's API from `peer`.
    pub fn api(peer: &str, call: String) -> Who {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        Who {
            uid,
            user: format!("api {peer}"),
            command: call,
        }
    }
}

fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data the call fills in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled pw_name with a NUL-terminated string inside `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// How a change ended.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Done,
    /// The command failed part-way: the writes listed were made.
    Failed,
    /// The controller died part-way (kill -9, crash): the writes listed reached the kernel.
    Interrupted,
}

/// One change, as one line of the journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub unix: u64,
    #[serde(flatten)]
    pub who: Who,
    /// What was done: `apply`, `allow add`, `bans clear`, `undo`...
    pub action: String,
    pub interface: String,
    /// The generation the data plane ran when the change began.
    pub generation: u32,
    #[serde(default)]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The entries an `undo` reverted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undoes: Vec<u64>,
    pub writes: Vec<Write>,
}

/// One map entry written: its key and its value before and after, as bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Write {
    pub map: String,
    pub key: Hex,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The whole value; `None`: no entry.
    Set {
        before: Option<Hex>,
        after: Option<Hex>,
    },
    /// Part of a large value (the 130 KiB policy) that was there before and after.
    Patch { size: usize, ranges: Vec<Patch> },
}

/// Bytes `offset..offset + before.len()` of a value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Patch {
    pub offset: usize,
    pub before: Hex,
    pub after: Hex,
}

/// Bytes written as lowercase hex in the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(self.0.len() * 2);
        for byte in &self.0 {
            use std::fmt::Write as _;
            let _ = write!(text, "{byte:02x}");
        }
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Hex)
            .map_err(serde::de::Error::custom)
    }
}

/// Maps whose entries belong to one policy generation: a change to them only makes sense
/// while the data plane runs that generation.
pub fn generation_scoped(map: &str) -> bool {
    use sipguard_common::abi::map_name as m;
    map == m::POLICY
        || map == m::PREFILTER
        || [
            m::ALLOW4,
            m::ALLOW6,
            m::ALLOW_HOSTS4,
            m::ALLOW_HOSTS6,
            m::DENY4,
            m::DENY6,
            m::SIGNATURES,
            m::DESTINATIONS,
        ]
        .iter()
        .any(|pair| pair.contains(&map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let write = Write {
            map: "SG_BANS".into(),
            key: Hex(vec![0, 1, 0xab, 0xff]),
            change: Change::Set {
                before: None,
                after: Some(Hex(vec![0x10])),
            },
        };
        let text = serde_json::to_string(&write).unwrap();
        assert!(text.contains("\"key\":\"0001abff\""), "{text}");
        assert_eq!(serde_json::from_str::<Write>(&text).unwrap(), write);
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"zz\"").is_err());
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        assert_eq!(shell_word("198.51.100.0/24"), "198.51.100.0/24");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
