//! Set-up shared by every test of one run, done once by the first test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::access::{CONTROLLER_USER, ClusterAccess, NO_KEYS_USER, check_token_user, token_of};
use crate::kubectl::Kubectl;
use crate::local::{Controller, DemoFunctions, LocalGateway, portcullis_binary};
use crate::manifest::InstallManifest;
use crate::settings::{KUBECONFIG_VAR, Mode, Settings, required};

/// How long the shared controller may take for its first full sync.
const FIRST_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// State shared by every test of one run.
pub struct Suite {
    /// Settings read from the environment.
    pub settings: Settings,
    /// kubectl with the admin kubeconfig.
    pub kubectl: Kubectl,
    /// The API server of the admin kubeconfig.
    pub access: ClusterAccess,
    /// Scratch directory of this run: logs and kubeconfigs.
    pub work_dir: PathBuf,
    /// Random suffix that makes this run's namespace names unique.
    pub run_id: String,
    /// Local processes, in local mode.
    pub local: Option<LocalGateway>,
    /// Outcome of waiting for the shared controller's first full sync.
    first_sync: OnceCell<Result<(), String>>,
}

/// Outcome of the shared set-up.
enum Prepared {
    Ready(Box<Suite>),
    /// The cluster does not fit the mode, for the reason in the text.
    Skipped(String),
    /// The set-up panicked with this message.
    Failed(String),
}

static SUITE: OnceCell<Prepared> = OnceCell::const_new();

impl Suite {
    /// Returns the shared state, setting it up on the first call, or `None`
    /// (after printing why) when no kubeconfig is given or local mode is
    /// pointed at an API server that is not on 127.0.0.1.
    ///
    /// # Panics
    ///
    /// Panics when the set-up failed, in this test or an earlier one.
    pub async fn get() -> Option<&'static Suite> {
        let Some(settings) = Settings::from_env() else {
            println!(
                "skipped: {KUBECONFIG_VAR} is not set. Run .ci/run, or {KUBECONFIG_VAR}=PATH ./scripts/test.sh with the kubeconfig of a test API server (see tests/e2e/README.md)"
            );
            return None;
        };
        let prepared = SUITE
            .get_or_init(|| async move {
                // A panic in the set-up becomes an error that every test
                // reports, instead of each test retrying the set-up.
                match tokio::spawn(Suite::set_up(settings)).await {
                    Ok(Ok(suite)) => Prepared::Ready(Box::new(suite)),
                    Ok(Err(reason)) => Prepared::Skipped(reason),
                    Err(error) => Prepared::Failed(match error.try_into_panic() {
                        Ok(payload) => panic_text(payload.as_ref()),
                        Err(error) => error.to_string(),
                    }),
                }
            })
            .await;
        match prepared {
            Prepared::Ready(suite) => Some(suite),
            Prepared::Skipped(reason) => {
                println!("skipped: {reason}");
                None
            }
            Prepared::Failed(message) => panic!("the end-to-end set-up failed: {message}"),
        }
    }

    /// Sets up the run. Returns `Err` with the reason when the tests are to
    /// be skipped.
    async fn set_up(settings: Settings) -> Result<Suite, String> {
        let run_id = random_hex(3);
        let work_dir = scratch_dir().join(&run_id);
        std::fs::create_dir_all(work_dir.join("kubectl-cache"))
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", work_dir.display()));
        let kubectl = Kubectl::new(&settings.kubeconfig, &work_dir.join("kubectl-cache"));
        let access = ClusterAccess::read(&kubectl).await;

        let local = match &settings.mode {
            Mode::Local => {
                // Local mode runs processes on this machine that reach the
                // API server with test-only tokens, so it needs a local
                // test API server that authenticates those tokens. The checks come
                // before anything is applied, so another cluster stays
                // untouched.
                if let Err(reason) = check_test_server(&settings, &kubectl, &access).await {
                    assert!(!required(), "{reason}");
                    return Err(reason);
                }
                Some(set_up_local(&settings, &kubectl, &access, &work_dir).await)
            }
            Mode::Cluster { gateway } => {
                println!(
                    "cluster mode: gateway {gateway}, API server {}",
                    access.server
                );
                None
            }
        };
        Ok(Suite {
            settings,
            kubectl,
            access,
            work_dir,
            run_id,
            local,
            first_sync: OnceCell::new(),
        })
    }

    /// Waits until the shared controller of local mode has completed its
    /// first full sync. Only the first caller waits; later callers get the
    /// same outcome. In cluster mode, `tests/e2e/kind/run.sh` has already
    /// waited for the chart's readiness probe.
    ///
    /// # Panics
    ///
    /// Panics when the controller did not become ready.
    pub async fn wait_gateway_ready(&self) {
        let Some(local) = &self.local else {
            return;
        };
        let outcome = self
            .first_sync
            .get_or_init(|| local.controller.try_wait_ready(FIRST_SYNC_TIMEOUT))
            .await;
        if let Err(message) = outcome {
            panic!("the shared controller is not serving: {message}");
        }
    }

    /// Returns the base URL of the gateway under test.
    pub fn gateway(&self) -> &str {
        match (&self.settings.mode, &self.local) {
            (Mode::Cluster { gateway }, _) => gateway,
            (Mode::Local, Some(local)) => &local.controller.traffic,
            (Mode::Local, None) => unreachable!("local mode always sets up a local gateway"),
        }
    }

    /// Returns a fresh path in the scratch directory.
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.work_dir.join(format!("{name}-{}", random_hex(3)))
    }
}

/// Checks that the API server listens on 127.0.0.1 and authenticates the
/// token-file users of the tests.
///
/// # Errors
///
/// Returns the reason to skip local mode.
async fn check_test_server(
    settings: &Settings,
    kubectl: &Kubectl,
    access: &ClusterAccess,
) -> Result<(), String> {
    if !access.is_loopback() {
        return Err(format!(
            "local mode needs a test API server on 127.0.0.1, but {} names {}; use cluster mode (tests/e2e/kind/run.sh) for other clusters",
            settings.kubeconfig.display(),
            access.server
        ));
    }
    for user in [CONTROLLER_USER, NO_KEYS_USER, "alice", "bob"] {
        check_token_user(kubectl, user).await?;
    }
    Ok(())
}

/// Applies the CRDs and RBAC of the install manifest, and starts the demo
/// functions and the shared controller.
async fn set_up_local(
    settings: &Settings,
    kubectl: &Kubectl,
    access: &ClusterAccess,
    work_dir: &Path,
) -> LocalGateway {
    let manifest = InstallManifest::read(&settings.install_manifest);
    kubectl.apply(&manifest.local_objects_yaml()).await;
    kubectl
        .ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gatewayroutes.portcullis.dev",
                "crd/apikeys.portcullis.dev",
            ],
            None,
        )
        .await;

    let binary = portcullis_binary();
    let functions = DemoFunctions::start(&binary, work_dir).await;
    let kubeconfig = work_dir.join("controller.kubeconfig");
    access.write_kubeconfig(&kubeconfig, &token_of(CONTROLLER_USER), None);
    // The chart's leader-election Role allows only the Lease
    // `portcullis-leader`, the default of --lease-name.
    let controller =
        Controller::start(&binary, &kubeconfig, "portcullis-e2e-shared", work_dir, &[]).await;
    println!(
        "local mode: {} as {CONTROLLER_USER} with the RBAC of {}, traffic {}, admin {}, logs in {}",
        binary.display(),
        settings.install_manifest.display(),
        controller.traffic,
        controller.admin,
        work_dir.display()
    );
    LocalGateway {
        binary,
        functions,
        controller,
        manifest,
    }
}

/// Returns `<target>/tmp/portcullis-e2e`, next to Cargo's scratch
/// directory for integration tests.
fn scratch_dir() -> PathBuf {
    let test_binary = std::env::current_exe().expect("path of the test binary");
    let target_dir = test_binary
        .ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    target_dir.join("tmp").join("portcullis-e2e")
}

/// Returns `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system provides random bytes");
    hex::encode(buffer)
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "the set-up panicked".to_owned()
    }
}
