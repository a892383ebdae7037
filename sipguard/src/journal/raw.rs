//! Any pinned map as keys and values of bytes: the journal reads what a write replaces and
//! `undo` writes it back through these, whatever the map's types.

use std::{collections::HashSet, os::fd::AsFd as _, path::Path};

use aya::maps::{MapData, MapType};

use super::JournalError;
use crate::sys::{ElemCommand, elem};

/// A key and its value, as bytes.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A pinned map opened for raw access.
pub struct RawMap {
    name: String,
    map: MapData,
    key_size: usize,
    value_size: usize,
    lpm: bool,
    /// LPM tries only: the keys present. A trie lookup returns the longest prefix covering the
    /// key, so presence of an exact key needs the key list.
    keys: Option<HashSet<Vec<u8>>>,
}

impl RawMap {
    pub fn open(name: &str, pin: &Path) -> Result<RawMap, JournalError> {
        let failed = |source: aya::maps::MapError| JournalError::Map {
            map: name.to_string(),
            source: std::io::Error::other(source.to_string()),
        };
        let map = MapData::from_pin(pin).map_err(failed)?;
        let info = map.info().map_err(failed)?;
        Ok(RawMap {
            name: name.to_string(),
            key_size: info.key_size() as usize,
            value_size: info.value_size() as usize,
            lpm: matches!(info.map_type(), Ok(MapType::LpmTrie)),
            map,
            keys: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    fn error(&self, source: std::io::Error) -> JournalError {
        JournalError::Map {
            map: self.name.clone(),
            source,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), JournalError> {
        if key.len() == self.key_size {
            return Ok(());
        }
        Err(self.error(std::io::Error::other(format!(
            "key of {} bytes, the map's are {}",
            key.len(),
            self.key_size
        ))))
    }

    /// Every key, in the kernel's order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, JournalError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; self.key_size];
        loop {
            let previous: Vec<u8> = keys.last().cloned().unwrap_or_default();
            match elem(
                self.map.fd().as_fd(),
                ElemCommand::NextKey,
                &previous,
                next.as_mut_ptr(),
                0,
            ) {
                Ok(()) => keys.push(next.clone()),
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(error) => return Err(self.error(error)),
            }
        }
    }

    /// The value stored under exactly `key`, if any.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        self.check_key(key)?;
        if self.lpm {
            if self.keys.is_none() {
                self.keys = Some(self.keys()?.into_iter().collect());
            }
            if !self.keys.as_ref().is_some_and(|keys| keys.contains(key)) {
                return Ok(None);
            }
        }
        let mut value = vec![0u8; self.value_size];
        match elem(
            self.map.fd().as_fd(),
            ElemCommand::Lookup,
            key,
            value.as_mut_ptr(),
            0,
        ) {
            Ok(()) => Ok(Some(value)),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(error) => Err(self.error(error)),
        }
    }

    /// Stores `value` under `key`, or removes the entry (`None`; nothing to remove is fine).
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), JournalError> {
        self.check_key(key)?;
        let result = match value {
            Some(value) if value.len() != self.value_size => {
                return Err(self.error(std::io::Error::other(format!(
                    "value of {} bytes, the map's are {}",
                    value.len(),
                    self.value_size
                ))));
            }
            Some(value) => elem(
                self.map.fd().as_fd(),
                ElemCommand::Update,
                key,
                value.as_ptr().cast_mut(),
                0,
            ),
            None => match elem(
                self.map.fd().as_fd(),
                ElemCommand::Delete,
                key,
                std::ptr::null_mut(),
                0,
            ) {
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other,
            },
        };
        result.map_err(|error| self.error(error))?;
        self.noted(key, value.is_some());
        Ok(())
    }

    /// Keeps the key list of a trie true after a write made through another handle.
    pub fn noted(&mut self, key: &[u8], present: bool) {
        if let Some(keys) = &mut self.keys {
            if present {
                keys.insert(key.to_vec());
            } else {
                keys.remove(key);
            }
        }
    }

    /// Every entry (tests compare whole maps with it).
    pub fn entries(&mut self) -> Result<Vec<RawEntry>, JournalError> {
        let mut entries = Vec::new();
        for key in self.keys()? {
            let mut value = vec![0u8; self.value_size];
            match elem(
                self.map.fd().as_fd(),
                ElemCommand::Lookup,
                &key,
                value.as_mut_ptr(),
                0,
            ) {
                Ok(()) => entries.push((key, value)),
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(error) => return Err(self.error(error)),
            }
        }
        Ok(entries)
    }
}

/// The bytes of a plain-data value.
pub fn bytes_of<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: Pod types are plain data without padding the kernel cares about; reading their
    // bytes is what the map syscalls do too.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}
