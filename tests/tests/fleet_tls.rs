//! Fleet mode against a Redis that wants TLS and AUTH, as a managed Redis does: `sipguard run
//! --fleet-redis rediss://...` with a private CA (`--fleet-ca-file`) and the password in a file
//! shares a ban; with a CA that did not sign the server's certificate, or a wrong password, it
//! shares nothing, reports `sipguard_fleet_connected 0`, and filters on.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sipguard_tests::{
    lab::{Lab, SBC_IF, wait_until},
    pins::TempPinRoot,
    sipguard_bin,
};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, and a server certificate for 127.0.0.1 it signed; and another CA that signed nothing.
fn certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "1",
                "-subj",
                &format!("/CN=sipguard test {ca}"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
}

#[test]
fn a_ban_is_shared_over_tls_with_auth_and_nothing_without_the_right_ca_or_password() {
    let lab = Lab::new("fleettls").unwrap();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let password = format!("pw-{}", std::process::id());
    std::fs::write(dir.path().join("password"), format!("{password}\n")).unwrap();
    std::fs::write(dir.path().join("wrong-password"), "guess\n").unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().to_string();
    let _redis = Running(
        lab.sbc
            .command("redis-server")
            .args(["--port", "0", "--tls-port", "6380", "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &path("server.pem")])
            .args(["--tls-key-file", &path("server.key")])
            .args([
                "--tls-ca-cert-file",
                &path("ca.pem"),
                "--tls-auth-clients",
                "no",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                &password,
            ])
            .args(["--dir", &path("")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup installs it)"),
    );
    let redis_cli = |args: &[&str]| -> Option<String> {
        let output = lab
            .sbc
            .command("redis-cli")
            .args(["--tls", "--cacert", &path("ca.pem"), "-p", "6380"])
            .args(["-a", &password, "--no-auth-warning"])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    assert!(
        wait_until(Duration::from_secs(10), || redis_cli(&["PING"]).as_deref()
            == Some("PONG")),
        "redis-server answers over TLS"
    );

    let pins = TempPinRoot::new("fleet-tls");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "mode = \"enforce\"\n[trunk]\nudp = [5060]\n").unwrap();
    let sipguard = |args: &[&str]| {
        let mut command = Command::new(sipguard_bin());
        command
            .arg("--pin-root")
            .arg(pins.path())
            .args(["--netns", lab.sbc.name(), "--journal-dir", &path("journal")])
            .args(args);
        command
    };
    let listen = "127.0.0.1:9464";
    let metrics = || {
        lab.sbc
            .run(move || {
                sipguard::cli::client::get(
                    listen.parse().unwrap(),
                    "/metrics",
                    Duration::from_secs(5),
                )
            })
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default()
    };
    let connected = |value: u8| {
        let line = format!("sipguard_fleet_connected{{fleet=\"tls\"}} {value}");
        move |metrics: &str| metrics.lines().any(|l| l == line)
    };
    let run = |ca: &str, password_file: &str| {
        Running(
            sipguard(&[
                "run",
                "--iface",
                SBC_IF,
                "--xdp-mode",
                "native",
                "--listen",
                listen,
            ])
            .args(["--policy", policy.to_str().unwrap()])
            .args([
                "--fleet-redis",
                "rediss://127.0.0.1:6380/0",
                "--fleet-name",
                "tls",
            ])
            .args(["--fleet-host", "sbc-a", "--fleet-ca-file", &path(ca)])
            .args(["--fleet-password-file", &path(password_file)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sipguard.err")).unwrap())
            .spawn()
            .unwrap(),
        )
    };
    let ban = |source: &str| {
        let output = sipguard(&["bans", "add", "--iface", SBC_IF, source])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let shared = |source: &str| {
        redis_cli(&["GET", &format!("sipguard:{{tls}}:state:ban:{source}/32")])
            .filter(|value| !value.is_empty())
    };

    // The wrong CA: the server's certificate is refused, nothing is shared, the ban holds here.
    {
        let _daemon = run("other-ca.pem", "password");
        assert!(
            wait_until(Duration::from_secs(20), || connected(0)(&metrics())),
            "the daemon serves metrics and is not connected:\n{}\n{}",
            metrics(),
            std::fs::read_to_string(path("sipguard.err")).unwrap_or_default()
        );
        ban("198.18.50.66");
        std::thread::sleep(Duration::from_secs(2));
        assert!(connected(0)(&metrics()), "{}", metrics());
        assert_eq!(shared("198.18.50.66"), None);
    }
    // The right CA and a wrong password: AUTH fails, nothing is shared.
    {
        let _daemon = run("ca.pem", "wrong-password");
        assert!(
            wait_until(Duration::from_secs(20), || connected(0)(&metrics())),
            "{}",
            metrics()
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(connected(0)(&metrics()), "{}", metrics());
        assert_eq!(shared("198.18.50.66"), None);
    }
    // Both right: the ban made while no daemon could share it goes out at the first connect,
    // and a new one follows.
    let _daemon = run("ca.pem", "password");
    assert!(
        wait_until(Duration::from_secs(20), || connected(1)(&metrics())),
        "{}",
        metrics()
    );
    assert!(
        wait_until(Duration::from_secs(5), || shared("198.18.50.66").is_some()),
        "the earlier ban shared at connect"
    );
    ban("198.18.50.67");
    assert!(
        wait_until(Duration::from_secs(5), || shared("198.18.50.67").is_some()),
        "the new ban shared"
    );
    let record: serde_json::Value = serde_json::from_str(&shared("198.18.50.67").unwrap()).unwrap();
    assert_eq!(record["origin"], "sbc-a");
    assert_eq!(record["reason"], "manual");
    let ttl: i64 = redis_cli(&["TTL", "sipguard:{tls}:state:ban:198.18.50.67/32"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3000..=3600).contains(&ttl),
        "the ban's hour left as TTL: {ttl}"
    );
    let output = sipguard(&["detach", "--iface", SBC_IF]).output().unwrap();
    assert!(output.status.success());
}
