//! The last good list of each source, one JSON file per source in the lists directory, so that a
//! restart while a source is down still has it. Written to a temporary file, synced and renamed:
//! a crash leaves the old file or the new one, never half of one.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::RemoteSource;

/// A last good list, as kept in memory and on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The `[[allow]]` entry's name and the URL or hostname: a file whose pair differs (a hash
    /// collision, a renamed entry) is not used.
    pub list: String,
    pub source: String,
    pub nets: Vec<IpNet>,
    /// Unix time of the last successful refresh.
    pub fetched_unix: u64,
    /// Validators of the last 200 answer, sent back as If-None-Match / If-Modified-Since.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// `<dir>/<list>-<fnv64 of list and source>.json`; the list name only as far as it is safe in a
/// file name.
pub(super) fn path(dir: &Path, source: &RemoteSource) -> PathBuf {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source
        .group
        .bytes()
        .chain([0])
        .chain(source.source().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let name: String = source
        .group
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    dir.join(format!("{name}-{hash:016x}.json"))
}

/// The cached list of `source`, if there is a readable one that belongs to it.
pub(super) fn load(dir: &Path, source: &RemoteSource) -> Option<Cached> {
    let path = path(dir, source);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            log::warn!("list cache {}: {error}", path.display());
            return None;
        }
    };
    match serde_json::from_str::<Cached>(&text) {
        Ok(cached) if cached.list == source.group && cached.source == source.source() => {
            Some(cached)
        }
        Ok(_) => None,
        Err(error) => {
            log::warn!("list cache {}: {error}", path.display());
            None
        }
    }
}

/// Writes `cached` as the last good list of `source`.
pub(super) fn store(dir: &Path, source: &RemoteSource, cached: &Cached) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = path(dir, source);
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut file = fs::File::create(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(cached).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&temporary, &path)?;
    if let Ok(directory) = fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn sources(dir: &Path) -> Vec<RemoteSource> {
        Policy::parse(
            "[[allow]]\nname = \"carrier b\"\nurls = [\"http://198.18.3.80/b.txt\"]\n\
             hosts = [\"_sip._udp.b.example\"]\n",
            dir.join("policy.toml"),
        )
        .unwrap()
        .remote
    }

    #[test]
    fn a_cached_list_round_trips_and_belongs_to_its_source_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("lists");
        let sources = sources(dir.path());
        assert_eq!(load(&cache_dir, &sources[0]), None, "nothing cached yet");
        let cached = Cached {
            list: "carrier b".into(),
            source: "http://198.18.3.80/b.txt".into(),
            nets: vec![
                "198.18.5.1/32".parse().unwrap(),
                "2001:db8:5::/48".parse().unwrap(),
            ],
            fetched_unix: 1_700_000_000,
            etag: Some("\"abc\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        };
        store(&cache_dir, &sources[0], &cached).unwrap();
        assert_eq!(load(&cache_dir, &sources[0]), Some(cached.clone()));
        assert_eq!(load(&cache_dir, &sources[1]), None, "another source's file");
        let name = path(&cache_dir, &sources[0]);
        assert!(
            name.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("carrierb-")
        );
        // A file that names another source (renamed entry, collision) is not used.
        fs::copy(&name, path(&cache_dir, &sources[1])).unwrap();
        assert_eq!(load(&cache_dir, &sources[1]), None);
        // A damaged file is ignored, not fatal.
        fs::write(&name, "{not json").unwrap();
        assert_eq!(load(&cache_dir, &sources[0]), None);
        let leftovers: Vec<_> = fs::read_dir(&cache_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }
}
