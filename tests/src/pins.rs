//! Temporary pin roots on the host's bpffs, removed (with whatever is attached) on drop.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under `/sys/fs/bpf/sipguard-test/`, unique to this process and call.
pub struct TempPinRoot {
    path: PathBuf,
}

impl TempPinRoot {
    pub fn new(tag: &str) -> TempPinRoot {
        crate::require_root();
        let base = Path::new("/sys/fs/bpf/sipguard-test");
        sipguard::state::ensure_bpffs(base)
            .expect("bpffs at /sys/fs/bpf (scripts/setup mounts it)");
        remove_roots_of_dead_processes(base);
        let path = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create pin root");
        TempPinRoot { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Pin roots left by test processes that died without unwinding (an abort, a kill): their
/// links would keep programs attached and their maps allocated.
fn remove_roots_of_dead_processes(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        // `{tag}-{pid}-{n}`; the tag may contain dashes.
        let Some(pid) = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempPinRoot {
    fn drop(&mut self) {
        // Removing a link pin detaches its program; removing map pins frees the maps.
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_dir(self.path.parent().unwrap_or(Path::new("/")));
    }
}
