//! sipguard's pin tree against hostile names and tampering: `detach` never reaches outside the
//! pin root nor removes what it did not create, directories another user owns or can write are
//! refused, and a pinned map swapped for another is refused.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink},
    path::Path,
    process::{Command, Output},
};

use sipguard::{
    compat::CompatError,
    dataplane::load,
    policy::Policy,
    state::{State, StateError, Target},
};
use sipguard_tests::{pins::TempPinRoot, sipguard_bin};

fn sipguard(pin_root: &Path, args: &[&str]) -> Output {
    Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(pin_root)
        .args(args)
        .env_remove("SIPGUARD_NETNS")
        .output()
        .expect("run sipguard")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Creates sipguard's state for `iface` under `root` (loaded, not attached) and closes it: the
/// pins stay.
fn make_state(root: &Path, iface: &str, policy: &str) -> Target {
    let target = Target::new(iface, None, root).unwrap();
    let policy = Policy::parse(policy, "policy.toml").unwrap();
    drop(load(&target, Some(&policy), None).unwrap_or_else(|e| panic!("load: {e}")));
    target
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An empty directory this test made, removed however the test ends.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn detach_never_touches_anything_outside_its_own_pins() {
    let pins = TempPinRoot::new("hostile");
    let root = pins.path();
    let victim = tempfile::tempdir().unwrap();
    fs::write(victim.path().join("policy.toml"), "keep me").unwrap();
    let victim_path = victim.path().to_str().unwrap();
    // A sibling of the pin root, in bpffs: `..` from the pin root reaches it.
    let sibling_name = format!("victim-{}", std::process::id());
    let sibling = root.parent().unwrap().join(&sibling_name);
    fs::create_dir(&sibling).unwrap();
    let _sibling = RemovedOnDrop(sibling.clone());
    let escape = format!("../{sibling_name}");

    for args in [
        vec!["detach", "--iface", victim_path],
        vec!["detach", "--iface", &escape],
        vec!["detach", "--iface", ".."],
        vec!["--netns", "../..", "detach", "--iface", "eth0"],
        vec!["--netns", &escape, "detach"],
        vec!["status", "--iface", "eth0 ../x"],
    ] {
        let output = sipguard(root, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?} is a usage error");
        assert!(
            stderr(&output).contains("name"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // The same names through the environment.
    let output = Command::new(sipguard_bin())
        .arg("--pin-root")
        .arg(root)
        .env("SIPGUARD_NETNS", "../..")
        .args(["detach", "--iface", "eth0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // A pin root that is not bpffs (the slip `--pin-root /tmp`) is refused before any removal.
    let parent = victim.path().parent().unwrap();
    let name = victim.path().file_name().unwrap().to_str().unwrap();
    let output = sipguard(parent, &["detach", "--iface", name]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not on a BPF filesystem"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        fs::read_to_string(victim.path().join("policy.toml")).unwrap(),
        "keep me"
    );
    assert!(sibling.is_dir(), "the pin root's sibling survives");

    // A directory under the pin root that sipguard did not make is not sipguard's to remove.
    fs::create_dir_all(root.join("eth9/keep")).unwrap();
    let output = sipguard(root, &["detach", "--iface", "eth9"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("holds no sipguard state"),
        "{}",
        stderr(&output)
    );
    assert!(root.join("eth9/keep").is_dir());

    // An interface directory that is a symlink is never followed.
    symlink(&sibling, root.join("eth8")).unwrap();
    let output = sipguard(root, &["detach", "--iface", "eth8"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert!(sibling.is_dir());

    // In its own directory, detach removes its pins and leaves what someone else put there.
    let target = make_state(root, "hostile0", "");
    fs::create_dir(target.dir().join("foreign")).unwrap();
    symlink(&sibling, target.dir().join("SG_FAKE")).unwrap();
    let output = sipguard(root, &["detach", "--iface", "hostile0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("SG_FAKE, foreign"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        entries(&target.dir()),
        ["SG_FAKE", "SG_META", "foreign"],
        "SG_META stays while the directory does"
    );
    assert!(sibling.is_dir());
    // Once the stranger's entries are gone, detach finishes the job.
    fs::remove_file(target.dir().join("SG_FAKE")).unwrap();
    fs::remove_dir(target.dir().join("foreign")).unwrap();
    let output = sipguard(root, &["detach", "--iface", "hostile0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!target.dir().exists());
    fs::remove_dir(&sibling).unwrap();
}

#[test]
fn pin_directories_that_other_users_own_or_can_write_are_refused() {
    let pins = TempPinRoot::new("untrusted");
    let root = pins.path();
    // Pre-created by a local user before the first attach: world-writable, or owned by them.
    let writable = root.join("evil0");
    fs::create_dir(&writable).unwrap();
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o777)).unwrap();
    let owned = root.join("evil1");
    fs::create_dir(&owned).unwrap();
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
    for (iface, problem) in [
        ("evil0", "writable by group or others (mode 0777)"),
        ("evil1", "owned by uid 65534"),
    ] {
        let target = Target::new(iface, None, root).unwrap();
        let error = load(&target, None, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(problem), "{error}");
        assert!(error.contains("chmod 0700"), "says how to fix it: {error}");
        assert!(entries(&target.dir()).is_empty(), "nothing was pinned");
        // The CLI refuses the same way, as a plain error.
        let output = sipguard(root, &["status", "--iface", iface]);
        assert!(!output.status.success());
        assert!(stderr(&output).contains(problem), "{}", stderr(&output));
    }
    // A world-writable pin root is refused too.
    let open_root = TempPinRoot::new("untrusted-root");
    fs::set_permissions(open_root.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let target = Target::new("eth0", None, open_root.path()).unwrap();
    let error = load(&target, None, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("mode 1777"), "{error}");

    // What sipguard creates itself is root's and 0700, the pin root included.
    let fresh_root = root.join("fresh");
    let target = make_state(&fresh_root, "eth0", "");
    for dir in [fresh_root.as_path(), &target.dir()] {
        let meta = fs::symlink_metadata(dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.display());
        assert_eq!(meta.uid(), 0);
    }
    State::open(&target).expect("its own state opens");
}

#[test]
fn a_pinned_map_swapped_for_another_is_refused() {
    let pins = TempPinRoot::new("swapped");
    let policy = r#"
[[allow]]
cidrs = ["192.0.2.0/24"]
[[deny]]
cidrs = ["203.0.113.0/24"]
"#;
    let target = make_state(pins.path(), "eth0", policy);
    State::open(&target).expect("untouched state opens");
    // Same kind and sizes: the allowlist trie in the denylist's place and back.
    let (allow, deny, parked) = (
        target.map_pin("SG_ALLOW4_0"),
        target.map_pin("SG_DENY4_0"),
        target.map_pin("parked"),
    );
    fs::rename(&allow, &parked).unwrap();
    fs::rename(&deny, &allow).unwrap();
    fs::rename(&parked, &deny).unwrap();
    let error = match State::open(&target) {
        Err(error @ StateError::Compat(CompatError::Incompatible { .. })) => error.to_string(),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a swapped map was accepted"),
    };
    assert!(
        error.contains("SG_ALLOW4_0") && error.contains("SG_DENY4_0"),
        "{error}"
    );
    let error = load(&target, None, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("named"), "{error}");
    let output = sipguard(pins.path(), &["allow", "list", "--iface", "eth0"]);
    assert!(!output.status.success(), "the CLI refuses it too");
}

#[test]
fn the_bpffs_sipguard_mounts_lets_only_root_create_entries_at_the_top() {
    // A private mount namespace without a bpffs at /sys/fs/bpf: sipguard mounts its own there.
    // Everything pinned in it goes with the namespace when the shell exits (the link too).
    let lab = sipguard_tests::lab::Lab::new("mount").unwrap();
    let script = format!(
        "umount -l /sys/fs/bpf 2>/dev/null; \
         {bin} --netns {ns} attach --iface {iface} >/dev/null && stat -c %a /sys/fs/bpf",
        bin = sipguard_bin().display(),
        ns = lab.sbc.name(),
        iface = sipguard_tests::lab::SBC_IF,
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // The kernel always adds the sticky bit to a bpffs root: 1700.
    let mode = u32::from_str_radix(String::from_utf8_lossy(&output.stdout).trim(), 8).unwrap();
    assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
}
