//! Local mode: `portcullis run` and the demo functions as processes on
//! 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::{Call, client};
use crate::process::{Supervised, free_port};
use crate::settings::{BINARY_VAR, workspace_root};
use crate::wait::{POLL_INTERVAL, eventually};

/// Namespace of the chart's ServiceAccount and leader-election Lease.
pub const SYSTEM_NAMESPACE: &str = "portcullis-system";

/// How long a controller may take to respond to `/healthz` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns the `portcullis` binary: `$PORTCULLIS_BIN`, else the one next to
/// this test binary in the Cargo target directory (which follows
/// `CARGO_TARGET_DIR`), after `cargo build -p portcullis` so that it matches
/// the sources. Cargo releases its build lock before it runs tests, so the
/// nested build does not wait for the outer one.
///
/// # Panics
///
/// Panics when the build fails.
pub fn portcullis_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BINARY_VAR).filter(|value| !value.is_empty()) {
        return PathBuf::from(path);
    }
    // The test binary is <target>/<profile>/deps/<name>-<hash>.
    let test_binary = std::env::current_exe().expect("path of the test binary");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let binary = profile_dir.join("portcullis");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", "portcullis"])
        .current_dir(workspace_root());
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p portcullis failed; set {BINARY_VAR} to use a binary built elsewhere"
    );
    assert!(
        binary.exists(),
        "cargo build -p portcullis did not produce {}; set {BINARY_VAR}",
        binary.display()
    );
    binary
}

/// Everything local mode runs: the binary, the demo functions and one
/// `portcullis run` that every test sends traffic to.
pub struct LocalGateway {
    /// The `portcullis` binary.
    pub binary: PathBuf,
    /// The demo functions `echo` and `events`.
    pub functions: DemoFunctions,
    /// The shared controller, running as the chart's ServiceAccount.
    pub controller: Controller,
    /// The install manifest whose CRDs and RBAC were applied.
    pub manifest: crate::manifest::InstallManifest,
}

/// A `portcullis run` process.
pub struct Controller {
    /// Base URL of the traffic listener.
    pub traffic: String,
    /// Base URL of the admin listener.
    pub admin: String,
    name: String,
    process: Mutex<Supervised>,
}

impl Controller {
    /// Starts `portcullis run` with `kubeconfig`, listening on free ports of
    /// 127.0.0.1, and waits until `/healthz` responds.
    ///
    /// `name` names the replica in the Lease and the log file in
    /// `log_dir`. `extra` is appended to the flags.
    ///
    /// # Panics
    ///
    /// Panics when the process exits or `/healthz` does not respond within
    /// 20 seconds.
    pub async fn start(
        binary: &Path,
        kubeconfig: &Path,
        name: &str,
        log_dir: &Path,
        extra: &[&str],
    ) -> Controller {
        let traffic_port = free_port();
        let admin_port = free_port();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{traffic_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
            "--lease-namespace".into(),
            SYSTEM_NAMESPACE.into(),
            "--identity".into(),
            name.into(),
            "--log-format".into(),
            "text".into(),
        ];
        args.extend(extra.iter().map(|flag| (*flag).to_owned()));
        let log = log_dir.join(format!("{name}.log"));
        let process = Supervised::start(name, binary, &args, &log);
        let controller = Controller {
            traffic: format!("http://127.0.0.1:{traffic_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            name: name.to_owned(),
            process: Mutex::new(process),
        };
        controller.wait_healthy().await;
        controller
    }

    async fn wait_healthy(&self) {
        let http = client();
        let healthz = Call::new(&http, "GET", format!("{}/healthz", self.admin));
        let condition = format!("{} to respond to /healthz", self.name);
        eventually(START_TIMEOUT, &condition, || async {
            if let Some(status) = self.exit_status() {
                panic!(
                    "{} exited with {status} (log: {})",
                    self.name,
                    self.log().display()
                );
            }
            healthz.try_send().await.map(drop)
        })
        .await;
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.process.lock().expect("process lock").exit_status()
    }

    /// Path of the controller's log.
    pub fn log(&self) -> PathBuf {
        self.process.lock().expect("process lock").log().to_owned()
    }

    /// Waits until `/readyz` returns 200.
    ///
    /// # Panics
    ///
    /// Panics after `timeout` with the message of
    /// [`Controller::try_wait_ready`].
    pub async fn wait_ready(&self, timeout: Duration) {
        if let Err(message) = self.try_wait_ready(timeout).await {
            panic!("{message}");
        }
    }

    /// Waits until `/readyz` returns 200.
    ///
    /// # Errors
    ///
    /// Returns a message with the watch error counts from `/metrics` and the
    /// path of the log after `timeout`.
    pub async fn try_wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let http = client();
        let readyz = Call::new(&http, "GET", format!("{}/readyz", self.admin));
        let started = Instant::now();
        while started.elapsed() < timeout {
            if readyz
                .try_send()
                .await
                .is_ok_and(|reply| reply.status == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let errors = self.watch_errors().await;
        Err(format!(
            "{} did not become ready within {} s; watch errors by kind: {errors}; log: {}",
            self.name,
            timeout.as_secs(),
            self.log().display()
        ))
    }

    /// Returns the `portcullis_watch_errors_total` samples, for failure
    /// messages, as `kind=count` pairs.
    pub async fn watch_errors(&self) -> String {
        let samples: Vec<String> = self
            .metrics()
            .await
            .lines()
            .filter_map(|line| line.strip_prefix("portcullis_watch_errors_total{kind=\""))
            .map(|rest| rest.replacen("\"} ", "=", 1))
            .collect();
        if samples.is_empty() {
            "none".to_owned()
        } else {
            samples.join(", ")
        }
    }

    /// Returns the text of `/metrics`, or an empty string when it fails.
    pub async fn metrics(&self) -> String {
        let http = client();
        Call::new(&http, "GET", format!("{}/metrics", self.admin))
            .try_send()
            .await
            .map(|reply| reply.body)
            .unwrap_or_default()
    }

    /// Returns one sample of `/metrics`, 0 when absent. `series` is the
    /// metric name with its labels as printed, for example
    /// `portcullis_watch_errors_total{kind="ApiKey"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }
}

/// Two demo functions, `echo` and `events`, on free ports of 127.0.0.1.
pub struct DemoFunctions {
    /// Port of the `echo` function.
    pub echo_port: u16,
    /// Port of the `events` function.
    pub events_port: u16,
    _processes: Vec<Mutex<Supervised>>,
}

impl DemoFunctions {
    /// Starts `portcullis demo-function` twice and waits until both accept
    /// connections.
    ///
    /// # Panics
    ///
    /// Panics when a function does not listen within 20 seconds.
    pub async fn start(binary: &Path, log_dir: &Path) -> DemoFunctions {
        let mut processes = Vec::new();
        let mut ports = Vec::new();
        for name in ["echo", "events"] {
            let port = free_port();
            let args = vec![
                "demo-function".to_owned(),
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                "--name".to_owned(),
                name.to_owned(),
            ];
            let log = log_dir.join(format!("function-{name}.log"));
            processes.push(Mutex::new(Supervised::start(name, binary, &args, &log)));
            ports.push(port);
        }
        for port in &ports {
            let condition = format!("a demo function to listen on 127.0.0.1:{port}");
            eventually(START_TIMEOUT, &condition, || async {
                tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
            .await;
        }
        DemoFunctions {
            echo_port: ports[0],
            events_port: ports[1],
            _processes: processes,
        }
    }

    /// Returns the Services `echo` and `events` of `namespace` with one
    /// EndpointSlice each that points at the local functions, because the
    /// API server runs no EndpointSlice controller.
    pub fn services_yaml(&self, namespace: &str) -> String {
        [("echo", self.echo_port), ("events", self.events_port)]
            .iter()
            .map(|(name, port)| {
                format!(
                    r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  ports:
    - name: http
      port: 8080
      targetPort: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-local
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
  - name: http
    port: {port}
    protocol: TCP
endpoints:
  - addresses: ["127.0.0.1"]
    conditions:
      ready: true
"#
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }
}
