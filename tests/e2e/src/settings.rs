//! Settings of a run, read from environment variables.

use std::path::{Path, PathBuf};

/// Kubeconfig of the cluster under test. Without it every test is skipped.
pub const KUBECONFIG_VAR: &str = "PORTCULLIS_E2E_KUBECONFIG";
/// `1` turns a missing kubeconfig into a failure.
pub const REQUIRED_VAR: &str = "PORTCULLIS_E2E_REQUIRED";
/// `local` (default) or `cluster`.
pub const MODE_VAR: &str = "PORTCULLIS_E2E_MODE";
/// Traffic address of the installed gateway, for cluster mode.
pub const GATEWAY_VAR: &str = "PORTCULLIS_E2E_GATEWAY";
/// Path of the `portcullis` binary for local mode.
pub const BINARY_VAR: &str = "PORTCULLIS_BIN";
/// Install manifest whose CRDs and RBAC local mode applies.
pub const INSTALL_MANIFEST_VAR: &str = "PORTCULLIS_E2E_INSTALL_MANIFEST";
/// `1` keeps each test's namespace after the test, for inspection.
pub const KEEP_VAR: &str = "PORTCULLIS_E2E_KEEP";

/// Where the gateway under test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The suite runs `portcullis run` and the demo functions as local
    /// processes on 127.0.0.1, with the chart's RBAC applied to the cluster.
    Local,
    /// The chart and the demo functions run as pods; the suite reaches the
    /// gateway at this base URL (a port-forward on 127.0.0.1).
    Cluster {
        /// Base URL of the gateway, `http://127.0.0.1:PORT`.
        gateway: String,
    },
}

/// Settings of one run of the suite.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Admin kubeconfig of the cluster under test.
    pub kubeconfig: PathBuf,
    /// Local or cluster mode.
    pub mode: Mode,
    /// Install manifest whose CRDs and RBAC objects local mode applies.
    pub install_manifest: PathBuf,
    /// Keep test namespaces instead of deleting them.
    pub keep_namespaces: bool,
}

/// Root of the Cargo workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Returns true when `PORTCULLIS_E2E_REQUIRED=1`.
pub fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|value| value == "1")
}

impl Settings {
    /// Reads the settings, or returns `None` when no kubeconfig is given.
    ///
    /// # Panics
    ///
    /// Panics on an invalid mode or gateway address, and when no kubeconfig
    /// is given while `PORTCULLIS_E2E_REQUIRED=1`.
    pub fn from_env() -> Option<Settings> {
        let kubeconfig = std::env::var_os(KUBECONFIG_VAR).filter(|value| !value.is_empty());
        let Some(kubeconfig) = kubeconfig else {
            assert!(
                !required(),
                "{REQUIRED_VAR}=1 but {KUBECONFIG_VAR} is not set: run .ci/run, or set it to the kubeconfig of a test API server"
            );
            return None;
        };

        let mode = match std::env::var(MODE_VAR).as_deref() {
            Err(_) | Ok("" | "local") => Mode::Local,
            Ok("cluster") => Mode::Cluster {
                gateway: gateway_from_env(),
            },
            Ok(other) => panic!("{MODE_VAR}={other:?} is invalid: use local or cluster"),
        };
        let install_manifest = std::env::var_os(INSTALL_MANIFEST_VAR)
            .filter(|value| !value.is_empty())
            .map_or_else(
                || workspace_root().join("manifests/install.yaml"),
                PathBuf::from,
            );

        Some(Settings {
            kubeconfig: PathBuf::from(kubeconfig),
            mode,
            install_manifest,
            keep_namespaces: std::env::var(KEEP_VAR).is_ok_and(|value| value == "1"),
        })
    }
}

/// Reads the gateway address of cluster mode, which must be a loopback
/// address (the port-forward that `tests/e2e/kind/run.sh` starts).
fn gateway_from_env() -> String {
    let gateway = std::env::var(GATEWAY_VAR).unwrap_or_default();
    let gateway = gateway.trim_end_matches('/').to_owned();
    let host = gateway
        .strip_prefix("http://")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _port)| host);
    assert!(
        matches!(host, Some("127.0.0.1" | "localhost" | "[::1]")),
        "{MODE_VAR}=cluster needs {GATEWAY_VAR}=http://127.0.0.1:PORT (a port-forward to the gateway Service), got {gateway:?}"
    );
    gateway
}
