//! sipguard's pin tree in bpffs: `<pin-root>/<iface>[@<netns>]/{SG_*, link}`.
//!
//! The tree is the live filter: whoever can write into it can swap a map, detach the program or
//! plant a directory that a later `attach` fills. So every name that becomes a path component is
//! validated, directories are created 0700, and a pin root or interface directory that another
//! user owns or can write is refused with a message saying how to fix it. Root (and the user
//! sipguard runs as) is trusted; other local users are not.

use std::{
    ffi::CString,
    fs,
    os::{
        fd::AsRawFd as _,
        unix::{
            ffi::OsStrExt as _,
            fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
        },
    },
    path::{Path, PathBuf},
};

/// Where pins go unless told otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sipguard";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// The kernel's IFNAMSIZ less the terminating NUL.
const MAX_IFACE_NAME: usize = 15;
/// sipguard's own bound on `ip netns` names (files in /run/netns).
const MAX_NETNS_NAME: usize = 64;

/// A name that cannot be an interface or network namespace name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?} {problem}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub problem: &'static str,
}

/// The kernel's rules for interface names (`dev_valid_name`): 1-15 bytes, not `.` or `..`, no
/// `/`, `:` or whitespace; sipguard also refuses control characters and `@`, which separates the
/// interface from the namespace in its directory names.
pub fn check_iface_name(name: &str) -> Result<(), NameError> {
    name_problem(name, MAX_IFACE_NAME, true).map_or(Ok(()), |problem| {
        Err(NameError {
            kind: "interface",
            name: name.to_string(),
            problem,
        })
    })
}

/// The same rules for `ip netns` names (up to 64 bytes; `:` allowed).
pub fn check_netns_name(name: &str) -> Result<(), NameError> {
    name_problem(name, MAX_NETNS_NAME, false).map_or(Ok(()), |problem| {
        Err(NameError {
            kind: "network namespace",
            name: name.to_string(),
            problem,
        })
    })
}

fn name_problem(name: &str, max_len: usize, is_iface: bool) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > max_len {
        Some(if is_iface {
            "is longer than 15 bytes"
        } else {
            "is longer than 64 bytes"
        })
    } else if name == "." || name == ".." {
        Some("is not a name ('.' and '..' are directories)")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('@') {
        Some("contains '@' (sipguard names state directories <iface>@<netns>)")
    } else if is_iface && name.contains(':') {
        Some("contains ':'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or control characters")
    } else {
        None
    }
}

/// Which interface (in which network namespace) and where its state is pinned. Only valid names
/// get in, so [`Target::dir`] always lies directly under the pin root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    iface: String,
    netns: Option<String>,
    pin_root: PathBuf,
}

impl Target {
    pub fn new(iface: &str, netns: Option<&str>, pin_root: &Path) -> Result<Target, NameError> {
        check_iface_name(iface)?;
        if let Some(netns) = netns {
            check_netns_name(netns)?;
        }
        Ok(Target {
            iface: iface.to_string(),
            netns: netns.map(str::to_string),
            pin_root: pin_root.to_path_buf(),
        })
    }

    /// The target named by a pin directory label (`eth0`, `eth0@sbc`).
    pub fn from_label(pin_root: &Path, label: &str) -> Result<Target, NameError> {
        match label.split_once('@') {
            Some((iface, netns)) => Target::new(iface, Some(netns), pin_root),
            None => Target::new(label, None, pin_root),
        }
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Named network namespace (`ip netns`) the interface lives in, if not the caller's.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    /// Name of the pin directory: `eth0`, or `eth0@sbc` for an interface in netns `sbc`.
    pub fn label(&self) -> String {
        match &self.netns {
            Some(netns) => format!("{}@{netns}", self.iface),
            None => self.iface.clone(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.pin_root.join(self.label())
    }

    pub fn map_pin(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn link_pin(&self) -> PathBuf {
        self.dir().join(LINK_PIN)
    }

    /// The pinned tcx link of the egress program.
    pub fn egress_link_pin(&self) -> PathBuf {
        self.dir().join(EGRESS_LINK_PIN)
    }

    /// Every interface with sipguard state under `pin_root` (directories with valid names that
    /// hold an `SG_META` pin), sorted by label.
    pub fn list(pin_root: &Path) -> Vec<Target> {
        let mut targets: Vec<Target> = fs::read_dir(pin_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|entry| {
                entry
                    .path()
                    .join(sipguard_common::abi::map_name::META)
                    .exists()
            })
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter_map(|label| Target::from_label(pin_root, &label).ok())
            .collect();
        targets.sort_by_key(Target::label);
        targets
    }
}

/// Name of the XDP link's pin in an interface directory.
pub const LINK_PIN: &str = "link";
/// Name of the egress program's link pin (tcx, next to the XDP link).
pub const EGRESS_LINK_PIN: &str = "egress_link";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "{path} is not on a BPF filesystem; mount one with `mount -t bpf -o mode=0700 bpf {path}` \
         or pick another --pin-root",
        path = .path.display()
    )]
    NoBpffs { path: PathBuf },
    #[error("refusing {path}: {problem}; {fix}", path = .path.display())]
    Untrusted {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PinError {
    let what = what.into();
    move |source| PinError::Io { what, source }
}

/// Makes sure `pin_root` is on a bpffs, mounting one at /sys/fs/bpf if that is where it belongs
/// and nothing is mounted there yet. sipguard's mount is mode 0700: only root creates entries at
/// its top (the kernel's default, 1777, lets any user plant a directory there).
pub fn ensure_bpffs(pin_root: &Path) -> Result<(), PinError> {
    let sys_bpf = Path::new("/sys/fs/bpf");
    if pin_root.starts_with(sys_bpf) && !is_bpffs(sys_bpf) {
        let source = c"bpf";
        let target = c"/sys/fs/bpf";
        let options = c"mode=0700";
        // SAFETY: valid NUL-terminated strings; bpffs takes a text option string.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(PinError::Io {
                what: "mount bpffs at /sys/fs/bpf".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    let mut probe = pin_root.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if !is_bpffs(&probe) {
        return Err(PinError::NoBpffs {
            path: pin_root.to_path_buf(),
        });
    }
    Ok(())
}

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: plain old data, filled by statfs.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

/// Users whose files sipguard trusts: root and the user it runs as.
fn trusted_owner(uid: u32) -> bool {
    // SAFETY: no arguments.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Creates the pin root and the interface directory (0700) where missing, after checking that
/// no untrusted user can change the path to them; refuses directories it did not make safely.
pub fn prepare_dir(target: &Target) -> Result<(), PinError> {
    let root = target.pin_root();
    ensure_bpffs(root)?;
    create_private_dirs(root)?;
    check_ancestors(root)?;
    check_owned_dir(root)?;
    let dir = target.dir();
    create_private_dir(&dir)?;
    check_owned_dir(&dir)
}

/// Checks an existing interface directory and the path to it. `Ok(false)`: there is none.
pub fn check_dir(target: &Target) -> Result<bool, PinError> {
    let dir = target.dir();
    match fs::symlink_metadata(&dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io_error(format!("stat {}", dir.display()))(error)),
        Ok(_) => {}
    }
    if !is_bpffs(&dir) {
        return Err(PinError::NoBpffs { path: dir });
    }
    check_ancestors(target.pin_root())?;
    check_owned_dir(target.pin_root())?;
    check_owned_dir(&dir)?;
    Ok(true)
}

/// Creates `path` and any missing parents with mode 0700 (whatever the umask).
fn create_private_dirs(path: &Path) -> Result<(), PinError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_private_dirs(parent)?;
    }
    create_private_dir(path)
}

fn create_private_dir(path: &Path) -> Result<(), PinError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            // The umask may have taken bits away; none can have been added, but be exact.
            fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_error(format!("chmod 0700 {}", path.display())))
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(io_error(format!("create {}", path.display()))(error)),
    }
}

/// A directory sipguard keeps pins in: a real directory (not a symlink), owned by a trusted user,
/// writable by nobody else.
fn check_owned_dir(path: &Path) -> Result<(), PinError> {
    let meta = fs::symlink_metadata(path).map_err(io_error(format!("stat {}", path.display())))?;
    let untrusted = |problem: String| PinError::Untrusted {
        path: path.to_path_buf(),
        problem,
        fix: format!(
            "if you did not create it, remove it (`rm -r {p}`: it may hold another user's pins), \
             else `chown root:root {p} && chmod 0700 {p}`",
            p = path.display()
        ),
    };
    if meta.file_type().is_symlink() {
        return Err(untrusted("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(untrusted("it is not a directory".into()));
    }
    if !trusted_owner(meta.uid()) {
        return Err(untrusted(format!(
            "it is owned by uid {}, not root",
            meta.uid()
        )));
    }
    if meta.mode() & GROUP_OR_OTHER_WRITE != 0 {
        return Err(untrusted(format!(
            "it is writable by group or others (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Every directory above `path` must be owned by a trusted user and writable by nobody else,
/// unless sticky (like /tmp, or a bpffs mounted with the kernel's default 1777): otherwise
/// another user could rename the pin root away and put their own in its place.
fn check_ancestors(path: &Path) -> Result<(), PinError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let parent =
        fs::canonicalize(parent).map_err(io_error(format!("resolve {}", parent.display())))?;
    for ancestor in parent.ancestors() {
        let meta =
            fs::metadata(ancestor).map_err(io_error(format!("stat {}", ancestor.display())))?;
        let writable_by_others = meta.mode() & GROUP_OR_OTHER_WRITE != 0;
        let sticky = meta.mode() & STICKY != 0;
        if !trusted_owner(meta.uid()) || (writable_by_others && !sticky) {
            return Err(PinError::Untrusted {
                path: path.to_path_buf(),
                problem: format!(
                    "{} above it is owned by uid {} with mode {:04o}, so another user could \
                     replace it",
                    ancestor.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
                fix: "pick a --pin-root whose parent directories only root can write".into(),
            });
        }
    }
    Ok(())
}

/// Exclusive lock on an interface's pin directory, so that two controllers never interleave
/// their changes. Released on drop.
pub struct Lock {
    _dir: fs::File,
}

impl Lock {
    /// Waits for the lock.
    pub fn acquire(dir: &Path) -> Result<Lock, PinError> {
        Self::flock(dir, libc::LOCK_EX).map(|lock| lock.expect("a blocking lock is taken"))
    }

    /// Takes the lock if it is free: `Ok(None)` while another command holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<Lock>, PinError> {
        Self::flock(dir, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn flock(dir: &Path, operation: libc::c_int) -> Result<Option<Lock>, PinError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .map_err(io_error(format!("open {}", dir.display())))?;
        // SAFETY: valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(io_error(format!("lock {}", dir.display()))(error));
        }
        Ok(Some(Lock { _dir: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for good in ["eth0", "enp0s31f6", "veth-sbc.100", "a", "123456789012345"] {
            assert_eq!(check_iface_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "/tmp/x",
            "../x",
            "eth0/..",
            "1234567890123456",
            "eth 0",
            "eth0\n",
            "eth\t0",
            "eth0:1",
            "eth0@ns",
            "eth\u{7f}",
        ] {
            assert!(check_iface_name(bad).is_err(), "{bad:?} accepted");
        }
        let error = check_iface_name("/etc/sipguard").unwrap_err().to_string();
        assert!(error.contains("'/'"), "{error}");
    }

    #[test]
    fn namespace_names_follow_the_same_rules() {
        assert_eq!(check_netns_name("sg-lab-sbc-1234:5"), Ok(()));
        for bad in ["", "..", "../../etc", "a/b", "a b", "a@b", &"n".repeat(65)] {
            assert!(check_netns_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn targets_stay_under_their_pin_root() {
        let root = Path::new("/sys/fs/bpf/sipguard");
        let target = Target::new("eth0", Some("sbc"), root).unwrap();
        assert_eq!(target.dir(), root.join("eth0@sbc"));
        assert_eq!(Target::from_label(root, "eth0@sbc").unwrap(), target);
        assert!(Target::new("..", None, root).is_err());
        assert!(Target::new("eth0", Some(".."), root).is_err());
        assert!(Target::from_label(root, "a@b@c").is_err());
        assert!(Target::from_label(root, "@").is_err());
    }

    #[test]
    fn private_directories_are_made_0700_and_foreign_ones_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = tempfile::tempdir().unwrap();
        let made = scratch.path().join("a/b");
        create_private_dirs(&made).unwrap();
        for dir in [scratch.path().join("a"), made.clone()] {
            let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        check_owned_dir(&made).unwrap();
        fs::set_permissions(&made, fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_owned_dir(&made).unwrap_err().to_string();
        assert!(error.contains("writable by group or others"), "{error}");
        assert!(error.contains("chmod 0700"), "{error}");
        fs::set_permissions(&made, fs::Permissions::from_mode(0o700)).unwrap();
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&made, &link).unwrap();
        let error = check_owned_dir(&link).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        // A world-writable parent without the sticky bit is refused for what lies below it.
        let open = scratch.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_ancestors(&open.join("root")).unwrap_err().to_string();
        assert!(error.contains("another user could replace it"), "{error}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        check_ancestors(&open.join("root")).unwrap();
    }
}
