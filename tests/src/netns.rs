//! Network namespaces joined by veth pairs, named uniquely and always deleted (also on panic).

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A named network namespace (`ip netns`), deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `sg-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Result<NetNs> {
        crate::require_root();
        let name = format!(
            "sg-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let netns = NetNs { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> ...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <name> program args...`
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A `Command` that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> Result<()> {
        let file = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("open netns {}", self.name))?;
        // SAFETY: valid namespace fd.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` on a thread inside the namespace and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))
    }

    /// Starts `f` on a thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>> {
        let name = self.name.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let entered = File::open(format!("/run/netns/{name}"))
                .map_err(|e| e.to_string())
                .and_then(|file| {
                    // SAFETY: valid namespace fd.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error().to_string())
                    }
                });
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            assert!(ok, "could not enter netns {name}");
            f()
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(error)) => bail!("enter netns {}: {error}", self.name),
            Err(_) => bail!("thread for netns {} died", self.name),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting a namespace does not end its processes: a peer that outlived its guard
        // (a daemon's worker, an attack tool) would run on, orphaned.
        kill_processes_in(&[self.name.as_str()], Duration::from_millis(500));
        // Deleting the namespace destroys its veths (and with them any XDP link on them).
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Ends every process in the named namespaces: SIGTERM, `grace` to exit, then SIGKILL.
pub fn kill_processes_in(namespaces: &[&str], grace: Duration) {
    let signal_all = |signal: i32| {
        let mut signalled = false;
        for ns in namespaces {
            let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a process of a namespace this code created.
                unsafe { libc::kill(pid, signal) };
                signalled = true;
            }
        }
        signalled
    };
    if signal_all(libc::SIGTERM) {
        std::thread::sleep(grace);
        signal_all(libc::SIGKILL);
    }
}

/// Joins two namespaces with a veth pair named `a_if` (in `a`) and `b_if` (in `b`), both up.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> Result<()> {
    run(
        "ip",
        &[
            "link",
            "add",
            a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    )?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Adds an address (`198.18.0.1/15`, `2001:db8::1/64`); IPv6 without duplicate detection.
pub fn add_addr(ns: &NetNs, iface: &str, cidr: &str) -> Result<()> {
    if cidr.contains(':') {
        ns.ip(&["addr", "add", cidr, "dev", iface, "nodad"])?;
    } else {
        ns.ip(&["addr", "add", cidr, "dev", iface])?;
    }
    Ok(())
}
