//! `cargo xtask package`: a Debian package of sipguard, staged here and built with plain
//! `dpkg-deb --build` (no cargo-deb, nothing to install): target/package/sipguard_<v>_<arch>.deb.
//!
//! The release binary carries its eBPF object; the man pages and completions come from the
//! binary itself (`sipguard generate`), so they always match its command line.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{cmd, run_with, target_dir, workspace_root};

const PACKAGE: &str = "sipguard";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// In the package, relative to its root.
pub(crate) const BINARY: &str = "usr/sbin/sipguard";
const UNIT: &str = "lib/systemd/system/sipguard@.service";
const EXAMPLE: &str = "etc/sipguard/example.toml";
const LOGROTATE: &str = "etc/logrotate.d/sipguard";
const ALERTS: &str = "usr/share/sipguard/alerts/sipguard.rules.yml";
const GRAFANA: &str = "usr/share/sipguard/grafana/sipguard.json";
const MAN_DIR: &str = "usr/share/man/man8";
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "usr/share/bash-completion/completions/sipguard"),
    ("zsh", "usr/share/zsh/vendor-completions/_sipguard"),
    ("fish", "usr/share/fish/vendor_completions.d/sipguard.fish"),
];
/// Files under /etc: dpkg keeps an operator's changes to them across upgrades.
const CONFFILES: [&str; 2] = [EXAMPLE, LOGROTATE];

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Package the release binary already built instead of running `cargo build --release`.
    #[arg(long)]
    no_build: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let deb = build(!args.no_build)?;
    println!("{}", deb.display());
    Ok(())
}

/// Builds the release binary (unless `cargo_build` is false) and the package; returns its path.
pub(crate) fn build(cargo_build: bool) -> Result<PathBuf> {
    if cargo_build {
        cmd("cargo", &["build", "--release", "-p", "sipguard"])?;
    }
    let binary = target_dir().join("release/sipguard");
    if !binary.exists() {
        bail!(
            "{} missing: build it (cargo build --release -p sipguard)",
            binary.display()
        );
    }
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out_dir = target_dir().join("package");
    let stage = out_dir.join(format!("{PACKAGE}_{VERSION}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("remove {}", stage.display()))?;
    }
    let root = workspace_root();

    // The binary, stripped (the eBPF object is data in it, untouched by strip).
    let installed = put(&stage, BINARY, &fs::read(&binary)?, 0o755)?;
    run_with(
        Command::new("strip")
            .arg("--strip-unneeded")
            .arg(&installed),
    )?;
    put(
        &stage,
        UNIT,
        &fs::read(root.join("packaging/systemd/sipguard@.service"))?,
        0o644,
    )?;
    put(
        &stage,
        EXAMPLE,
        example_policy(&installed)?.as_bytes(),
        0o644,
    )?;
    put(
        &stage,
        LOGROTATE,
        &fs::read(root.join("packaging/logrotate/sipguard"))?,
        0o644,
    )?;
    put(
        &stage,
        ALERTS,
        &fs::read(root.join("sipguard/alerts/sipguard.rules.yml"))?,
        0o644,
    )?;
    // The dashboard is written on another branch: shipped once it is there.
    let dashboard = root.join("packaging/grafana/sipguard.json");
    if dashboard.exists() {
        put(&stage, GRAFANA, &fs::read(&dashboard)?, 0o644)?;
    } else {
        eprintln!(
            "package: {} absent, no Grafana dashboard",
            dashboard.display()
        );
    }
    man_pages(&installed, &stage.join(MAN_DIR))?;
    for (shell, path) in COMPLETIONS {
        let script = output(
            Command::new(&installed)
                .args(["generate", "completions", shell])
                .env_remove("RUST_LOG"),
        )?;
        put(&stage, path, format!("{script}\n").as_bytes(), 0o644)?;
    }
    put(
        &stage,
        "usr/share/doc/sipguard/copyright",
        copyright().as_bytes(),
        0o644,
    )?;

    // DEBIAN/: control, conffiles, maintainer scripts (daemon-reload, restart on upgrade).
    let depends = depends(&installed)?;
    let installed_size = installed_size(&stage)?;
    put(
        &stage,
        "DEBIAN/control",
        control(&arch, &depends, installed_size).as_bytes(),
        0o644,
    )?;
    let conffiles: String = CONFFILES.iter().map(|f| format!("/{f}\n")).collect();
    put(&stage, "DEBIAN/conffiles", conffiles.as_bytes(), 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        put(
            &stage,
            &format!("DEBIAN/{script}"),
            &fs::read(root.join("packaging/debian").join(script))?,
            0o755,
        )?;
    }
    let deb = out_dir.join(format!("{PACKAGE}_{VERSION}_{arch}.deb"));
    run_with(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// Writes `contents` at `relative` under `stage` with `mode`, creating directories 0755.
fn put(stage: &Path, relative: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
    let path = stage.join(relative);
    let parent = path.parent().expect("a file under the stage");
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let mut dir = parent;
    while dir != stage {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        dir = dir.parent().expect("under the stage");
    }
    fs::set_permissions(stage, fs::Permissions::from_mode(0o755))?;
    fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(path)
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("run {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim_end().to_string())
}

/// The example policy, in monitor mode: safe to start with on any interface.
fn example_policy(binary: &Path) -> Result<String> {
    let example = output(Command::new(binary).arg("example"))?;
    let enforce = "mode = \"enforce\"";
    if example.matches(enforce).count() != 1 {
        bail!("the example policy has no single `{enforce}` line to turn into monitor mode");
    }
    Ok(format!(
        "# Copy to /etc/sipguard/<iface>.toml, put your carriers' and phones' ranges in, check it\n\
         # (`sipguard check FILE`), then `systemctl enable --now sipguard@<iface>`. It starts in\n\
         # monitor mode: it counts what it would drop (`sipguard stats`) and drops nothing.\n\
         # `systemctl reload sipguard@<iface>` applies the file again after an edit.\n\
         #\n{}\n",
        example.replacen(enforce, "mode = \"monitor\"", 1)
    ))
}

fn man_pages(binary: &Path, dir: &Path) -> Result<()> {
    let listed = output(Command::new(binary).arg("generate").arg("man").arg(dir))?;
    let pages: Vec<&str> = listed.lines().collect();
    // -n: no name or time stamp in the archive, so the package is reproducible.
    run_with(Command::new("gzip").arg("-9nf").args(&pages))?;
    for page in pages {
        fs::set_permissions(format!("{page}.gz"), fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// libc6 and libgcc-s1 (Rust's unwinder) at the newest symbol versions the binary uses.
fn depends(binary: &Path) -> Result<String> {
    let bytes = fs::read(binary)?;
    let newest = |prefix: &str| -> Option<Vec<u32>> {
        let needle = prefix.as_bytes();
        bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle)
            .filter_map(|(at, _)| {
                let rest = &bytes[at + needle.len()..];
                let end = rest
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                    .unwrap_or(rest.len());
                let text = std::str::from_utf8(&rest[..end]).ok()?;
                let parts: Option<Vec<u32>> = text
                    .split('.')
                    .filter(|part| !part.is_empty())
                    .map(|part| part.parse().ok())
                    .collect();
                parts.filter(|parts| !parts.is_empty())
            })
            .max()
    };
    let join = |parts: &[u32]| {
        parts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(".")
    };
    let glibc = newest("GLIBC_").context("no GLIBC_ symbol version in the binary")?;
    let mut depends = format!("libc6 (>= {})", join(&glibc));
    if let Some(gcc) = newest("GCC_") {
        depends.push_str(&format!(
            ", libgcc-s1 (>= {})",
            join(&gcc[..gcc.len().min(2)])
        ));
    }
    Ok(depends)
}

/// KiB, as dpkg counts it: every file rounded up to a KiB, and one per directory.
fn installed_size(stage: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name() == "DEBIAN" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                *total += 1;
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(stage, &mut total)?;
    Ok(total)
}

fn control(arch: &str, depends: &str, installed_size: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: sipguard developers <sipguard@example.invalid>\n\
         Installed-Size: {installed_size}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.invalid/sipguard\n\
         Description: SIP edge filter in XDP for the host of a session border controller\n \
         sipguard drops SIP from sources that are not allowlisted before the SBC\n \
         (Kamailio, OpenSIPS, Asterisk) spends a cycle on it: per-zone allowlists,\n \
         budgets and bans, scanner signatures, an INVITE destination firewall and\n \
         bans from the SBC's own answers. The filter is pinned in bpffs and keeps\n \
         working while its controller is stopped or upgraded.\n \
         .\n \
         This package ships the controller (with the eBPF programs built in), a\n \
         systemd unit per interface (sipguard@IFACE.service), an example policy,\n \
         Prometheus alert rules, a logrotate snippet, man pages and completions.\n"
    )
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: sipguard\n\
         Source: https://example.invalid/sipguard\n\
         \n\
         Files: *\n\
         Copyright: sipguard developers\n\
         License: MIT or Apache-2.0\n \
         Dual-licensed; see the source repository for both texts. On Debian systems the\n \
         Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.\n"
        .to_string()
}
