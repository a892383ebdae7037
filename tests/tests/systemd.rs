//! `sipguard run` the way `sipguard@.service` runs it (Type=notify, ExecReload = SIGHUP):
//! READY=1 on `$NOTIFY_SOCKET` once it serves; SIGHUP applies the edited policy file, journaled
//! like `sipguard apply`, between RELOADING=1 and READY=1; a policy with errors on SIGHUP is
//! reported with file:line and the running policy stays; SIGUSR1 only reopens the event log.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sipguard_tests::{
    lab::{Lab, SBC_IF, wait_until},
    pins::TempPinRoot,
    sipguard_bin,
};

/// Bounds every wait so that a daemon that never answers fails the test instead of hanging it;
/// nothing is asserted about how long anything takes.
const PATIENCE: Duration = Duration::from_secs(120);

/// A child process killed (and reaped) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, signal) }, 0);
    }
}

/// The service manager's side of `$NOTIFY_SOCKET`: a Unix datagram socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> NotifySocket {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        NotifySocket { socket, path }
    }

    /// Every assignment received until one message holds `wanted` (that message included).
    fn until(&self, wanted: &str, log: &Path) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok(len) = self.socket.recv(&mut buffer) else {
                panic!(
                    "no {wanted} from the daemon; received {seen:?}; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            };
            let message = String::from_utf8_lossy(&buffer[..len]).to_string();
            let done = message.lines().any(|line| line == wanted);
            seen.extend(message.lines().map(str::to_string));
            if done {
                return seen;
            }
        }
    }
}

struct Setup {
    lab: Lab,
    pins: TempPinRoot,
    dir: tempfile::TempDir,
}

impl Setup {
    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn events(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    fn cli(&self) -> Command {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--netns", self.lab.sbc.name()])
            .arg("--journal-dir")
            .arg(self.dir.path().join("journal"));
        command
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "sipguard {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// (mode, serial, policy digest) of the running policy.
    fn running(&self) -> (String, u64, String) {
        let status = self.json(&["status", "--iface", SBC_IF, "--json"]);
        let status = &status[0];
        (
            status["mode"].as_str().unwrap().to_string(),
            status["serial"].as_u64().unwrap(),
            status["policy_digest"].as_str().unwrap_or("").to_string(),
        )
    }

    fn changes(&self) -> Vec<Value> {
        self.json(&["history", "--iface", SBC_IF, "--json"])["changes"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn example(mode: &str) -> String {
    let example = sipguard::policy::EXAMPLE_POLICY;
    assert!(example.contains("mode = \"enforce\""));
    example.replacen("mode = \"enforce\"", &format!("mode = \"{mode}\""), 1)
}

#[test]
fn run_notifies_systemd_and_reapplies_its_policy_on_sighup() {
    let setup = Setup {
        lab: Lab::new("sdnotify").unwrap(),
        pins: TempPinRoot::new("sdnotify"),
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(setup.policy(), example("monitor")).unwrap();
    let notify = NotifySocket::bind(setup.dir.path().join("notify.sock"));
    let log = std::fs::File::create(setup.log()).unwrap();
    let daemon = Running(
        setup
            .cli()
            .args(["run", "--iface", SBC_IF, "--xdp-mode", "native"])
            .args(["--listen", "127.0.0.1:9968"])
            .arg("--policy")
            .arg(setup.policy())
            .arg("--events")
            .arg(setup.events())
            .env("NOTIFY_SOCKET", &notify.path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // Ready once attached and serving.
    let ready = notify.until("READY=1", &setup.log());
    assert!(!ready.iter().any(|line| line == "RELOADING=1"), "{ready:?}");
    let (mode, serial, digest) = setup.running();
    assert_eq!(mode, "monitor");
    let before = setup.changes().len();

    // The edited file is applied on SIGHUP, journaled as an apply, between RELOADING and READY.
    std::fs::write(setup.policy(), example("enforce")).unwrap();
    daemon.signal(libc::SIGHUP);
    let reload = notify.until("READY=1", &setup.log());
    assert_eq!(
        reload.first().map(String::as_str),
        Some("RELOADING=1"),
        "{reload:?}"
    );
    assert!(
        reload
            .iter()
            .any(|line| line.starts_with("STATUS=policy") && line.contains("applied")),
        "{reload:?}"
    );
    let (mode, reloaded_serial, reloaded_digest) = setup.running();
    assert_eq!(mode, "enforce", "the edited policy is in force");
    assert!(reloaded_serial > serial);
    assert_ne!(reloaded_digest, digest);
    let changes = setup.changes();
    assert_eq!(
        changes.len(),
        before + 1,
        "one journal entry for the reload"
    );
    let entry = changes.last().unwrap();
    assert_eq!(entry["action"], "apply");
    assert!(
        entry["command"].as_str().unwrap().contains("(SIGHUP)"),
        "{entry}"
    );

    // A policy with an error: reported with file:line, nothing applied, nothing journaled.
    std::fs::write(
        setup.policy(),
        example("enforce").replacen("ipv6_prefix = 64", "ipv6_prefix = 640", 1),
    )
    .unwrap();
    let bad_line = example("enforce")
        .lines()
        .position(|line| line.starts_with("ipv6_prefix"))
        .unwrap()
        + 1;
    daemon.signal(libc::SIGHUP);
    let refused = notify.until("READY=1", &setup.log());
    assert!(
        refused
            .iter()
            .any(|line| line.starts_with("STATUS=reload failed")),
        "{refused:?}"
    );
    assert_eq!(
        setup.running(),
        (
            "enforce".to_string(),
            reloaded_serial,
            reloaded_digest.clone()
        ),
        "the running policy stays"
    );
    assert_eq!(setup.changes().len(), before + 1);
    let log_text = std::fs::read_to_string(setup.log()).unwrap();
    let location = format!("{}:{bad_line}", setup.policy().display());
    assert!(log_text.contains(&location), "{location} in:\n{log_text}");

    // SIGUSR1 (logrotate) reopens the event log and applies nothing.
    let rotated = setup.dir.path().join("events.jsonl.1");
    std::fs::rename(setup.events(), &rotated).unwrap();
    daemon.signal(libc::SIGUSR1);
    assert!(
        wait_until(PATIENCE, || setup.events().exists()),
        "the event log is reopened at its path"
    );
    assert_eq!(setup.running().1, reloaded_serial);
    assert_eq!(setup.changes().len(), before + 1);

    daemon.signal(libc::SIGTERM);
    notify.until("STOPPING=1", &setup.log());
}
