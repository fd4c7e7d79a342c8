//! kubectl, run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Output of one kubectl invocation.
#[derive(Debug)]
pub struct KubectlOutput {
    /// True when kubectl exited with status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error, where kubectl prints the API server's messages.
    pub stderr: String,
}

/// kubectl bound to one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

impl Kubectl {
    /// Creates a kubectl that uses `kubeconfig` and keeps its discovery
    /// cache in `cache_dir`, away from the user's `~/.kube/cache`.
    pub fn new(kubeconfig: &Path, cache_dir: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: kubeconfig.to_owned(),
            cache_dir: cache_dir.to_owned(),
        }
    }

    /// Path of the kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl with `args`, writing `stdin` to its standard input.
    ///
    /// # Panics
    ///
    /// Panics when kubectl cannot be started (it is not installed).
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run kubectl (is it on PATH?): {error}"));
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("kubectl stdin is piped");
            pipe.write_all(text.as_bytes())
                .await
                .expect("write to kubectl stdin");
            drop(pipe);
        }
        let output = child
            .wait_with_output()
            .await
            .expect("wait for kubectl to exit");
        KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its standard output.
    ///
    /// # Panics
    ///
    /// Panics with kubectl's standard error when it fails. Standard output
    /// is never part of the message, because it can contain a token.
    pub async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run(args, stdin).await;
        assert!(
            output.success,
            "kubectl {} failed: {}",
            args.join(" "),
            output.stderr.trim()
        );
        output.stdout
    }

    /// Runs `kubectl apply -f -` with `yaml`.
    pub async fn apply(&self, yaml: &str) -> String {
        self.ok(&["apply", "-f", "-"], Some(yaml)).await
    }

    /// Returns an object as JSON, or `None` when it does not exist.
    ///
    /// # Panics
    ///
    /// Panics when kubectl fails for another reason than NotFound.
    pub async fn get_json(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<serde_json::Value> {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(namespace) = namespace {
            args.extend(["-n", namespace]);
        }
        let output = self.run(&args, None).await;
        if !output.success {
            assert!(
                output.stderr.contains("NotFound") || output.stderr.contains("not found"),
                "kubectl {} failed: {}",
                args.join(" "),
                output.stderr.trim()
            );
            return None;
        }
        let value = serde_json::from_str(&output.stdout).unwrap_or_else(|error| {
            panic!("kubectl {} printed invalid JSON: {error}", args.join(" "))
        });
        Some(value)
    }
}
