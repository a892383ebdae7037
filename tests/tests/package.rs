//! The Debian package `cargo xtask package` builds (`SIPGUARD_DEB`, else the newest
//! target/package/sipguard_*.deb), unpacked into a scratch root with `dpkg-deb -x` and `-e`:
//! every file is there, the control fields and conffiles are right, the unit passes
//! `systemd-analyze verify`, every man page renders without a warning, the completions load,
//! and the shipped example policy passes `sipguard check` in monitor mode.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use clap::CommandFactory as _;

struct Unpacked {
    deb: PathBuf,
    _dir: tempfile::TempDir,
    root: PathBuf,
    control: PathBuf,
}

fn deb() -> PathBuf {
    if let Some(path) = std::env::var_os("SIPGUARD_DEB") {
        return path.into();
    }
    // Where `cargo xtask package` puts it: $CARGO_TARGET_DIR (relative to the workspace) or target/.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |target| workspace.join(target))
        .join("package");
    let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
    });
    newest.unwrap_or_else(|| {
        panic!(
            "no package in {}: run `cargo xtask package` (or set SIPGUARD_DEB)",
            dir.display()
        )
    })
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn unpack() -> Unpacked {
    let deb = deb();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let control = dir.path().join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    Unpacked {
        deb,
        _dir: dir,
        root,
        control,
    }
}

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Every visible command and subcommand of the CLI, as man page names (`sipguard-bans-list`).
fn commands() -> Vec<String> {
    fn walk(prefix: &str, command: &clap::Command, names: &mut Vec<String>) {
        names.push(prefix.to_string());
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            walk(&format!("{prefix}-{}", sub.get_name()), sub, names);
        }
    }
    let mut names = Vec::new();
    walk("sipguard", &sipguard::cli::Cli::command(), &mut names);
    names
}

#[test]
fn the_package_holds_every_file_with_the_right_control_fields() {
    let pkg = unpack();
    let mut expected: Vec<String> = vec![
        "usr/sbin/sipguard".into(),
        "lib/systemd/system/sipguard@.service".into(),
        "etc/sipguard/example.toml".into(),
        "etc/logrotate.d/sipguard".into(),
        "usr/share/sipguard/alerts/sipguard.rules.yml".into(),
        "usr/share/bash-completion/completions/sipguard".into(),
        "usr/share/zsh/vendor-completions/_sipguard".into(),
        "usr/share/fish/vendor_completions.d/sipguard.fish".into(),
        "usr/share/doc/sipguard/copyright".into(),
    ];
    expected.extend(
        commands()
            .iter()
            .map(|name| format!("usr/share/man/man8/{name}.8.gz")),
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if repo.join("packaging/grafana/sipguard.json").exists() {
        expected.push("usr/share/sipguard/grafana/sipguard.json".into());
    }
    for file in &expected {
        assert!(pkg.root.join(file).is_file(), "{file} is in the package");
    }
    assert!(
        commands().contains(&"sipguard-bans-list".to_string()),
        "subcommands of subcommands get pages too"
    );
    assert!(!commands().iter().any(|c| c.contains("generate")));

    // What `dpkg-deb -c` lists are exactly these files (and their directories), owned by root.
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&pkg.deb)));
    let files: Vec<&str> = listing
        .lines()
        .filter(|line| !line.starts_with('d'))
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    assert_eq!(files.len(), expected.len(), "{listing}");
    assert!(
        listing.lines().all(|line| line.contains(" root/root ")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("-rwxr-xr-x") && line.ends_with("./usr/sbin/sipguard")),
        "{listing}"
    );

    // Control fields.
    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&pkg.deb)
            .arg(name)))
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "sipguard");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        field("Architecture"),
        text(&run(Command::new("dpkg").arg("--print-architecture"))).trim()
    );
    let depends = field("Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("libgcc-s1"), "{depends}");
    assert!(field("Recommends").is_empty());
    assert!(!field("Maintainer").is_empty());
    assert!(field("Description").starts_with("SIP edge filter"));
    let size: u64 = field("Installed-Size").parse().unwrap();
    let binary_kib = std::fs::metadata(pkg.root.join("usr/sbin/sipguard"))
        .unwrap()
        .len()
        / 1024;
    assert!(
        size > binary_kib,
        "Installed-Size {size} KiB counts the binary"
    );
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&pkg.deb)));
    for part in ["control", "conffiles", "postinst", "prerm", "postrm"] {
        assert!(info.contains(part), "{part} in:\n{info}");
    }

    // Conffiles: everything under /etc, nothing else.
    let conffiles = std::fs::read_to_string(pkg.control.join("conffiles")).unwrap();
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["/etc/logrotate.d/sipguard", "/etc/sipguard/example.toml"]
    );
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(pkg.control.join(script)));
    }

    // The packaged binary runs and its example policy is valid, in monitor mode.
    let binary = pkg.root.join("usr/sbin/sipguard");
    let version = text(&run(Command::new(&binary).arg("--version")));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let example_path = pkg.root.join("etc/sipguard/example.toml");
    run(Command::new(&binary).arg("check").arg(&example_path));
    let example = std::fs::read_to_string(&example_path).unwrap();
    assert!(example.lines().any(|l| l.starts_with("mode = \"monitor\"")));
    assert!(!example.contains("mode = \"enforce\""));

    // logrotate reopens the log with SIGUSR1 (SIGHUP would re-apply the policy).
    let logrotate = std::fs::read_to_string(pkg.root.join("etc/logrotate.d/sipguard")).unwrap();
    assert!(logrotate.contains("/var/log/sipguard/*.jsonl"));
    assert!(logrotate.contains("--signal=USR1 'sipguard@*.service'"));
    if has_program("logrotate") {
        let state = pkg.root.join("../logrotate.state");
        run(Command::new("logrotate")
            .arg("--debug")
            .arg("--state")
            .arg(state)
            .arg(pkg.root.join("etc/logrotate.d/sipguard")));
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let pkg = unpack();
    let unit =
        std::fs::read_to_string(pkg.root.join("lib/systemd/system/sipguard@.service")).unwrap();
    // The unit names the installed path; verify checks that ExecStart is executable, so point
    // it at the unpacked binary.
    assert!(
        unit.contains("ExecStart=/usr/sbin/sipguard run --iface %I --policy /etc/sipguard/%I.toml")
    );
    for needed in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n",
        "ReadWritePaths=/sys/fs/bpf",
        "StateDirectory=sipguard",
        "LogsDirectory=sipguard",
        "SystemCallFilter=@system-service bpf",
        "AF_NETLINK",
    ] {
        assert!(unit.contains(needed), "{needed} in the unit");
    }
    assert!(
        !unit.contains("ProtectKernelTunables=yes"),
        "it would make /sys/fs/bpf read-only"
    );
    let dir = pkg.root.join("../units");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = pkg.root.join("usr/sbin/sipguard");
    std::fs::write(
        dir.join("sipguard@.service"),
        unit.replace("/usr/sbin/sipguard", binary.to_str().unwrap()),
    )
    .unwrap();
    for instance in ["sipguard@eth0.service", "sipguard@.service"] {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join(instance))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{instance}: {stderr}");
        // Unknown or unparsable settings are warnings with a zero exit status.
        assert!(stderr.trim().is_empty(), "{instance}: {stderr}");
    }
}

#[test]
fn every_man_page_renders_without_warnings() {
    let pkg = unpack();
    let dir = pkg.root.join("usr/share/man/man8");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    assert_eq!(pages.len(), commands().len());
    for page in &pages {
        let out = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{}: {stderr}", page.display());
        let rendered = text(&out);
        assert!(
            rendered.contains("NAME") && rendered.contains("SYNOPSIS"),
            "{}",
            page.display()
        );
    }
    let run_page = text(&run(Command::new("man")
        .arg("-l")
        .arg(dir.join("sipguard-run.8.gz"))
        .env("MANWIDTH", "80")));
    assert!(run_page.contains("SIGHUP") && run_page.contains("SIGUSR1"));
}

#[test]
fn completions_load() {
    let pkg = unpack();
    let bash = pkg
        .root
        .join("usr/share/bash-completion/completions/sipguard");
    let out = run(Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p sipguard",
        bash.display()
    )));
    assert!(
        text(&out).contains("-F _sipguard sipguard"),
        "{}",
        text(&out)
    );
    // The hidden packaging command is offered by no shell.
    for script in [
        "usr/share/bash-completion/completions/sipguard",
        "usr/share/zsh/vendor-completions/_sipguard",
        "usr/share/fish/vendor_completions.d/sipguard.fish",
    ] {
        let body = std::fs::read_to_string(pkg.root.join(script)).unwrap();
        assert!(body.contains("lockdown"), "{script}");
        assert!(!body.contains("generate"), "{script}");
    }
    if has_program("zsh") {
        run(Command::new("zsh")
            .arg("-n")
            .arg(pkg.root.join("usr/share/zsh/vendor-completions/_sipguard")));
    }
    if has_program("fish") {
        run(Command::new("fish").arg("--no-execute").arg(
            pkg.root
                .join("usr/share/fish/vendor_completions.d/sipguard.fish"),
        ));
    }
}
