//! One test's namespace with the demo functions, and the steps a user takes
//! in it: kubectl for objects, HTTP for traffic.

use std::time::{Duration, Instant};

use crate::access::token_of;
use crate::credential::Credential;
use crate::http::{Call, client};
use crate::kubectl::{Kubectl, KubectlOutput};
use crate::local::LocalGateway;
use crate::settings::workspace_root;
use crate::suite::Suite;
use crate::wait::{PROPAGATION_TIMEOUT, eventually};

/// Demo functions of cluster mode, applied to each test namespace.
const DEMO_FUNCTIONS_FILE: &str = "tests/e2e/kind/demo-functions.yaml";

/// How long the demo function pods of cluster mode may take to roll out.
const ROLLOUT_TIMEOUT: &str = "180s";

/// A test's namespace, deleted when the scenario is dropped unless
/// `PORTCULLIS_E2E_KEEP=1`.
pub struct Scenario {
    /// The namespace (tenant) of the test.
    pub namespace: String,
    /// State shared by the whole run.
    pub suite: &'static Suite,
    /// HTTP client of this test.
    pub http: reqwest::Client,
    namespaces: Vec<String>,
}

/// A user with a bearer token for session routes.
pub struct SessionUser {
    /// Token to send as `Authorization: Bearer`.
    pub token: Credential,
    /// The principal the function should receive, `user:<name>`.
    pub principal: String,
    /// RBAC subject of the user, as one line of YAML flow syntax.
    pub subject: String,
}

impl Scenario {
    /// Sets up the run if needed, then creates a namespace named
    /// `e2e-<prefix>-<run id>` with the Services `echo` and `events` of the
    /// demo functions, and waits until the gateway serves. Returns `None`
    /// when the suite is skipped.
    pub async fn start(prefix: &str) -> Option<Scenario> {
        let scenario = Scenario::start_without_traffic(prefix).await?;
        scenario.deploy_functions().await;
        scenario.suite.wait_gateway_ready().await;
        Some(scenario)
    }

    /// Like [`Scenario::start`], for tests that only talk to the API
    /// server: no functions, and no wait for the gateway.
    pub async fn start_without_traffic(prefix: &str) -> Option<Scenario> {
        let suite = Suite::get().await?;
        let mut scenario = Scenario {
            namespace: String::new(),
            suite,
            http: client(),
            namespaces: Vec::new(),
        };
        scenario.namespace = scenario.create_namespace(prefix).await;
        Some(scenario)
    }

    /// Returns true in local mode. In cluster mode, prints that the test is
    /// skipped because it needs `requirement`, and returns false.
    pub fn local_only(&self, requirement: &str) -> bool {
        if self.suite.local.is_some() {
            return true;
        }
        println!(
            "skipped in cluster mode: this test needs {requirement}, which only local mode has"
        );
        false
    }

    /// Returns the local processes.
    ///
    /// # Panics
    ///
    /// Panics in cluster mode; check [`Scenario::local_only`] first.
    pub fn local(&self) -> &LocalGateway {
        self.suite
            .local
            .as_ref()
            .expect("local processes exist only in local mode")
    }

    /// Creates another namespace, deleted with the scenario, without
    /// functions.
    pub async fn create_namespace(&mut self, prefix: &str) -> String {
        let name = format!("e2e-{prefix}-{}", self.suite.run_id);
        self.suite
            .kubectl
            .apply(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/part-of: portcullis-e2e\n"
            ))
            .await;
        self.namespaces.push(name.clone());
        name
    }

    async fn deploy_functions(&self) {
        let kubectl = &self.suite.kubectl;
        match &self.suite.local {
            Some(local) => {
                kubectl
                    .apply(&local.functions.services_yaml(&self.namespace))
                    .await;
            }
            None => {
                let file = workspace_root().join(DEMO_FUNCTIONS_FILE);
                let file = file.display().to_string();
                kubectl
                    .ok(&["apply", "-n", &self.namespace, "-f", &file], None)
                    .await;
                for deployment in ["deployment/echo", "deployment/events"] {
                    let timeout = format!("--timeout={ROLLOUT_TIMEOUT}");
                    kubectl
                        .ok(
                            &[
                                "rollout",
                                "status",
                                "-n",
                                &self.namespace,
                                deployment,
                                &timeout,
                            ],
                            None,
                        )
                        .await;
                }
            }
        }
    }

    /// Returns a request to `path` of this namespace's routes, at
    /// `/gw/<namespace><path>` of the gateway.
    pub fn call(&self, method: &str, path: &str) -> Call {
        let url = format!("{}/gw/{}{path}", self.suite.gateway(), self.namespace);
        Call::new(&self.http, method, url)
    }

    /// Returns a request to any URL, such as a controller's admin port.
    pub fn call_url(&self, method: &str, url: String) -> Call {
        Call::new(&self.http, method, url)
    }

    /// Runs `kubectl apply -f -` with `yaml`.
    ///
    /// # Panics
    ///
    /// Panics with kubectl's message when the API server rejects it.
    pub async fn apply(&self, yaml: &str) {
        self.suite.kubectl.apply(yaml).await;
    }

    /// Runs `kubectl apply -f -` with `yaml` and returns kubectl's output,
    /// for objects that the API server may reject.
    pub async fn try_apply(&self, yaml: &str) -> KubectlOutput {
        self.suite
            .kubectl
            .run(&["apply", "-f", "-"], Some(yaml))
            .await
    }

    /// Runs `kubectl patch <kind> <name> --type merge -p <patch>` in the
    /// test namespace.
    pub async fn patch(&self, kind: &str, name: &str, patch: &str) {
        self.suite
            .kubectl
            .ok(
                &[
                    "patch",
                    kind,
                    name,
                    "-n",
                    &self.namespace,
                    "--type",
                    "merge",
                    "-p",
                    patch,
                ],
                None,
            )
            .await;
    }

    /// Returns an object of the test namespace as JSON, or `None`.
    pub async fn object(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        self.suite
            .kubectl
            .get_json(kind, Some(&self.namespace), name)
            .await
    }

    /// Waits until the object's status has each `(type, status, reason)`
    /// condition (an empty reason matches any) with an `observedGeneration`
    /// equal to its `metadata.generation`, and returns the object.
    ///
    /// # Panics
    ///
    /// Panics after [`PROPAGATION_TIMEOUT`] with the last status seen.
    pub async fn wait_for_conditions(
        &self,
        kind: &str,
        name: &str,
        expected: &[(&str, &str, &str)],
    ) -> serde_json::Value {
        self.wait_for_conditions_in(&self.namespace, kind, name, expected)
            .await
    }

    /// Like [`Scenario::wait_for_conditions`], for an object of `namespace`.
    pub async fn wait_for_conditions_in(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        expected: &[(&str, &str, &str)],
    ) -> serde_json::Value {
        let condition = format!("{kind} {namespace}/{name} to report {expected:?}");
        eventually(PROPAGATION_TIMEOUT, &condition, || async {
            let object = self
                .suite
                .kubectl
                .get_json(kind, Some(namespace), name)
                .await
                .ok_or_else(|| "the object does not exist".to_owned())?;
            let generation = &object["metadata"]["generation"];
            let conditions = object["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let all_present = expected.iter().all(|(kind, status, reason)| {
                conditions.iter().any(|c| {
                    c["type"] == *kind
                        && c["status"] == *status
                        && (reason.is_empty() || c["reason"] == *reason)
                        && c["observedGeneration"] == *generation
                })
            });
            if all_present {
                Ok(object)
            } else {
                Err(format!(
                    "generation {generation}, status {}",
                    object["status"]
                ))
            }
        })
        .await
    }

    /// Waits until a GatewayRoute reports `Accepted`, `ResolvedRefs` and
    /// `Programmed` as True for its current generation.
    pub async fn wait_route_programmed(&self, name: &str) -> serde_json::Value {
        self.wait_for_conditions(
            "gatewayroute",
            name,
            &[
                ("Accepted", "True", "Accepted"),
                ("ResolvedRefs", "True", "ResolvedRefs"),
                ("Programmed", "True", "Programmed"),
            ],
        )
        .await
    }

    /// Waits until an ApiKey reports `Ready` True for its current
    /// generation.
    pub async fn wait_key_ready(&self, name: &str) -> serde_json::Value {
        self.wait_for_conditions("apikey", name, &[("Ready", "True", "Ready")])
            .await
    }

    /// Returns a bearer session for `name`. In local mode that is the
    /// token-file user `name` (`alice` or `bob`). In cluster mode it is a
    /// ServiceAccount `name` of the test namespace, with a token from
    /// `kubectl create token`.
    pub async fn session_user(&self, name: &str) -> SessionUser {
        if self.suite.local.is_some() {
            return SessionUser {
                token: token_of(name),
                principal: format!("user:{name}"),
                subject: format!(
                    "{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {name}}}"
                ),
            };
        }
        let kubectl = &self.suite.kubectl;
        kubectl
            .ok(
                &["create", "serviceaccount", name, "-n", &self.namespace],
                None,
            )
            .await;
        let token = kubectl
            .ok(
                &[
                    "create",
                    "token",
                    name,
                    "-n",
                    &self.namespace,
                    "--duration=1h",
                ],
                None,
            )
            .await;
        SessionUser {
            token: Credential::from_secret(token.trim().to_owned()),
            principal: format!("user:system:serviceaccount:{}:{name}", self.namespace),
            subject: format!(
                "{{kind: ServiceAccount, name: {name}, namespace: {}}}",
                self.namespace
            ),
        }
    }

    /// Waits until the API server's authorizer lets `user` do `verb` on
    /// `resource` in the test namespace, checked with `kubectl auth can-i`
    /// as that user. RBAC bindings take a moment to apply.
    pub async fn wait_can_i(&self, user: &SessionUser, verb: &str, resource: &str) {
        let kubeconfig = self.suite.scratch_path("session.kubeconfig");
        self.suite
            .access
            .write_kubeconfig(&kubeconfig, &user.token, None);
        let kubectl = Kubectl::new(&kubeconfig, &self.suite.work_dir.join("kubectl-cache"));
        let condition = format!("{} to be allowed to {verb} {resource}", user.principal);
        eventually(PROPAGATION_TIMEOUT, &condition, || async {
            let output = kubectl
                .run(
                    &["auth", "can-i", verb, resource, "-n", &self.namespace],
                    None,
                )
                .await;
            if output.stdout.trim() == "yes" {
                Ok(())
            } else {
                Err(format!("{} {}", output.stdout.trim(), output.stderr.trim()))
            }
        })
        .await;
        let _ = std::fs::remove_file(&kubeconfig);
    }

    /// Sends `call` every 5 ms until it returns `status`, and returns the
    /// time from `since` to that response.
    ///
    /// # Panics
    ///
    /// Panics after [`PROPAGATION_TIMEOUT`] with the last response.
    pub async fn time_until(&self, call: &Call, status: u16, since: Instant) -> Duration {
        let mut last = String::new();
        while since.elapsed() < PROPAGATION_TIMEOUT {
            match call.try_send().await {
                Ok(reply) if reply.status == status => return since.elapsed(),
                Ok(reply) => last = reply.describe(),
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "timed out after {} s waiting for a request to return {status}; last seen: {last}",
            PROPAGATION_TIMEOUT.as_secs()
        );
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if self.suite.settings.keep_namespaces {
            println!("kept namespaces {}", self.namespaces.join(" "));
            return;
        }
        if self.namespaces.is_empty() {
            return;
        }
        // Drop cannot await, so this runs kubectl synchronously. Deletion
        // continues in the background on the server.
        let mut args = vec!["delete".to_owned(), "namespace".to_owned()];
        args.extend(self.namespaces.iter().cloned());
        args.extend(["--wait=false".to_owned(), "--ignore-not-found".to_owned()]);
        let status = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.suite.kubectl.kubeconfig())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("failed to delete namespaces {}", self.namespaces.join(" "));
        }
    }
}
