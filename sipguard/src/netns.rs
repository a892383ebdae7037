//! Entering a named network namespace (`ip netns add NAME`) in-process.
//!
//! Unlike `ip netns exec`, this keeps the caller's mount namespace, so the bpffs at the pin root
//! stays the one every other command sees. Call it before any thread starts: `setns` only moves
//! the calling thread, and threads spawned later inherit its namespace.

use std::{fs::File, os::fd::AsRawFd as _, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(transparent)]
    Name(#[from] crate::pins::NameError),
    #[error("network namespace {name} not found ({path}): {source}", path = .path.display())]
    Open {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
}

/// Moves the calling thread into the named network namespace.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    crate::pins::check_netns_name(name)?;
    let path = PathBuf::from("/run/netns").join(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    // SAFETY: valid namespace fd.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Enter {
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
