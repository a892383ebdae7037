//! Whether pinned state is this build's to use: every map pinned under an interface directory
//! must be the map the embedded program declares (kernel name, type, sizes, flags), and `SG_META`
//! must carry this ABI version. State of another build is refused, never misread.

use std::path::Path;

use aya::maps::{Array, Map, MapData, MapError, MapInfo};
use sipguard_common::abi::{ABI_VERSION, META_MAGIC, Meta, map_name};

use crate::{
    pins::{PinError, Target},
    sys::lookup_bytes,
};

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(
        "pinned state in {dir} was made by an incompatible sipguard build: {detail}; \
         `sipguard detach --iface {iface}` removes it (filtering stops), then attach again",
        dir = .dir.display()
    )]
    Incompatible {
        dir: std::path::PathBuf,
        iface: String,
        detail: String,
    },
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error("read {path}: {source}", path = .path.display())]
    Meta {
        path: std::path::PathBuf,
        #[source]
        source: MapError,
    },
}

/// Expected shape of one map, read from the XDP object this build embeds.
#[derive(Debug)]
pub struct MapSpec {
    pub name: String,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// Every map of the embedded object (parsed once per process), in the object's order.
pub fn embedded_map_specs() -> &'static [MapSpec] {
    static SPECS: std::sync::OnceLock<Vec<MapSpec>> = std::sync::OnceLock::new();
    SPECS.get_or_init(|| {
        let object = aya_obj::Object::parse(crate::EBPF_OBJECT)
            .expect("the embedded XDP object parses (it was built with this controller)");
        let mut specs: Vec<MapSpec> = object
            .maps
            .iter()
            .filter(|(name, _)| name.starts_with("SG_"))
            .map(|(name, map)| MapSpec {
                name: name.clone(),
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: map.max_entries(),
                map_flags: map.map_flags(),
            })
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    })
}

/// The map pinned at `pin` is the one `spec` describes: same kernel name (so that an allowlist
/// trie moved into a denylist's place is caught), type, sizes and flags.
fn check_map(pin: &Path, spec: &MapSpec) -> Result<(), String> {
    let info = MapInfo::from_pin(pin).map_err(|e| format!("{}: {e}", pin.display()))?;
    let name = info.name_as_str().unwrap_or("");
    if name != spec.name {
        return Err(format!(
            "the map pinned as {} is named {name:?} in the kernel",
            spec.name
        ));
    }
    let map_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
    let found = (
        map_type,
        info.key_size(),
        info.value_size(),
        info.max_entries(),
        info.map_flags(),
    );
    let expected = (
        spec.map_type,
        spec.key_size,
        spec.value_size,
        spec.max_entries,
        spec.map_flags,
    );
    if found != expected {
        return Err(format!(
            "map {} has (type, key size, value size, entries, flags) {found:?}, this build \
             expects {expected:?}",
            spec.name
        ));
    }
    Ok(())
}

/// Refuses pinned maps this build would misread, and pin directories another user could have
/// tampered with. `Ok(false)` means there is no state yet.
pub fn check_compatible(target: &Target) -> Result<bool, CompatError> {
    let dir = target.dir();
    let incompatible = |detail: String| CompatError::Incompatible {
        dir: dir.clone(),
        iface: target.iface().to_string(),
        detail,
    };
    if !crate::pins::check_dir(target)? {
        return Ok(false);
    }
    let meta_pin = target.map_pin(map_name::META);
    if !meta_pin.exists() {
        return Ok(false);
    }
    let mut pinned_any = false;
    for spec in embedded_map_specs() {
        let pin = target.map_pin(&spec.name);
        if !pin.exists() {
            continue;
        }
        pinned_any = true;
        check_map(&pin, spec).map_err(incompatible)?;
    }
    let meta = read_meta(&meta_pin)?;
    if meta.magic == 0 {
        // Created but never initialised (a controller died half-way): start over on top of it.
        return Ok(false);
    }
    if meta.magic != META_MAGIC || meta.abi_version != ABI_VERSION {
        return Err(incompatible(format!(
            "state ABI version {} (magic {:#x}), this build uses {ABI_VERSION}",
            meta.abi_version, meta.magic
        )));
    }
    Ok(pinned_any)
}

/// Whether the directory of `target` is sipguard's: its `SG_META` pin is a one-entry array of
/// that name whose value starts with sipguard's magic, or with zero (state a controller created
/// and never finished). Any ABI version and value size, so that state of another build can go.
pub fn is_sipguard_dir(target: &Target) -> bool {
    let Ok(info) = MapInfo::from_pin(target.map_pin(map_name::META)) else {
        return false;
    };
    let shaped = info.name_as_str() == Some(map_name::META)
        && info
            .map_type()
            .is_ok_and(|t| t == aya::maps::MapType::Array)
        && info.key_size() == 4
        && info.value_size() >= 4;
    if !shaped {
        return false;
    }
    let mut value = vec![0u8; info.value_size() as usize];
    // Through the pin, not the map id (a descriptor by id needs CAP_SYS_ADMIN).
    let read = MapData::from_pin(target.map_pin(map_name::META))
        .and_then(|data| lookup_bytes(data.fd(), 0, &mut value));
    let magic = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
    read.is_ok() && (magic == META_MAGIC || magic == 0)
}

fn read_meta(pin: &Path) -> Result<Meta, CompatError> {
    let meta_error = |source| CompatError::Meta {
        path: pin.to_path_buf(),
        source,
    };
    let data = MapData::from_pin(pin).map_err(meta_error)?;
    let array: Array<MapData, Meta> = Map::from_map_data(data)
        .and_then(Array::try_from)
        .map_err(meta_error)?;
    array.get(&0, 0).map_err(meta_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_name_the_controller_uses_is_in_the_object_and_back() {
        let object: Vec<&str> = embedded_map_specs()
            .iter()
            .map(|spec| spec.name.as_str())
            .collect();
        let mut named: Vec<&str> = map_name::ALL.to_vec();
        named.sort_unstable();
        assert_eq!(object, named, "map_name::ALL and the built object differ");
        for spec in embedded_map_specs() {
            assert!(
                spec.name.len() <= 15,
                "{}: the kernel keeps 15 bytes",
                spec.name
            );
        }
    }
}
