//! The API server of the admin kubeconfig, and kubeconfigs for other users
//! of the same server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::credential::Credential;
use crate::kubectl::Kubectl;
use crate::settings::workspace_root;

/// Token-file users of the test API server, shared with the controller's
/// cluster tests. `.ci/run` starts the server with this file.
pub const TOKENS_FILE: &str = "crates/portcullis-controller/tests/envtest-tokens.csv";

/// The chart's ServiceAccount `portcullis` in `portcullis-system`.
pub const CONTROLLER_USER: &str = "system:serviceaccount:portcullis-system:portcullis";

/// A ServiceAccount user that only the readiness test grants permissions.
pub const NO_KEYS_USER: &str = "system:serviceaccount:portcullis-system:portcullis-e2e-nokeys";

/// Address and CA of the API server that the admin kubeconfig names.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// `https://host:port`.
    pub server: String,
    /// Base64 of the CA bundle that signs the server's certificate.
    ca_data: String,
}

impl ClusterAccess {
    /// Reads the current context's cluster with
    /// `kubectl config view --minify --raw`.
    ///
    /// # Panics
    ///
    /// Panics when the kubeconfig names no server or no CA.
    pub async fn read(kubectl: &Kubectl) -> ClusterAccess {
        let text = kubectl
            .ok(&["config", "view", "--minify", "--raw", "-o", "json"], None)
            .await;
        let config: serde_json::Value =
            serde_json::from_str(&text).expect("kubectl config view prints JSON");
        let cluster = &config["clusters"][0]["cluster"];
        let server = cluster["server"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "the kubeconfig {} names no server",
                    kubectl.kubeconfig().display()
                )
            })
            .trim_end_matches('/')
            .to_owned();
        let ca_data = match (
            cluster["certificate-authority-data"].as_str(),
            cluster["certificate-authority"].as_str(),
        ) {
            (Some(data), _) => data.to_owned(),
            (None, Some(path)) => STANDARD.encode(
                std::fs::read(path)
                    .unwrap_or_else(|error| panic!("failed to read the CA file {path}: {error}")),
            ),
            (None, None) => panic!(
                "the kubeconfig {} names no certificate authority for {server}",
                kubectl.kubeconfig().display()
            ),
        };
        ClusterAccess { server, ca_data }
    }

    /// Returns `host:port` of the server.
    pub fn server_address(&self) -> &str {
        self.server.strip_prefix("https://").unwrap_or(&self.server)
    }

    /// Returns true when the server listens on a loopback address.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .server_address()
            .rsplit_once(':')
            .map_or(self.server_address(), |(host, _port)| host);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    }

    /// Writes a kubeconfig that authenticates with `token`, readable only by
    /// the owner. `server` replaces the API server address when given, so
    /// that a controller can go through a forwarder.
    ///
    /// # Panics
    ///
    /// Panics when the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path, token: &Credential, server: Option<&str>) {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "e2e",
                "cluster": {
                    "server": server.unwrap_or(&self.server),
                    "certificate-authority-data": self.ca_data,
                },
            }],
            "users": [{"name": "e2e-user", "user": {"token": token.expose()}}],
            "contexts": [{
                "name": "e2e",
                "context": {"cluster": "e2e", "user": "e2e-user", "namespace": "default"},
            }],
            "current-context": "e2e",
        });
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", path.display()));
        file.write_all(config.to_string().as_bytes())
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
    }
}

/// Returns the token of `user` from the token file.
///
/// # Panics
///
/// Panics when the file has no line for `user`.
pub fn token_of(user: &str) -> Credential {
    let path = workspace_root().join(TOKENS_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
    text.lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ',');
            let token = fields.next()?;
            (fields.next()? == user).then(|| Credential::from_secret(token.to_owned()))
        })
        .unwrap_or_else(|| panic!("{} has no line for user {user}", path.display()))
}

/// Checks with a TokenReview that the API server authenticates the
/// token-file user `user`.
///
/// # Errors
///
/// Returns what to do when the server does not authenticate `user`.
pub async fn check_token_user(kubectl: &Kubectl, user: &str) -> Result<(), String> {
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token_of(user).expose()},
    });
    // The response contains the token in its spec, so only its status is read.
    let output = kubectl
        .run(
            &["create", "-f", "-", "-o", "json"],
            Some(&review.to_string()),
        )
        .await;
    if !output.success {
        return Err(format!(
            "the TokenReview for {user} failed: {}",
            output.stderr.trim()
        ));
    }
    let response: serde_json::Value =
        serde_json::from_str(&output.stdout).map_err(|error| error.to_string())?;
    if response["status"]["authenticated"] == true {
        Ok(())
    } else {
        Err(format!(
            "the API server does not authenticate the test user {user}: start it with ENVTEST_EXTRA_TOKENS=<repository>/{TOKENS_FILE} (as .ci/run does), or use cluster mode (tests/e2e/kind/run.sh)"
        ))
    }
}
