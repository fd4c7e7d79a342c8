//! ApiKeys in a cluster, through the Kubernetes API and the user's
//! kubeconfig.

use std::time::Duration;

use anyhow::Context;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Api, Client, Config};
use portcullis_api::{ApiKey, ApiKeySpec, GatewayRoute};
use serde_json::json;

use super::{FIELD_MANAGER, StoreError, Updated};
use crate::cli::TargetArgs;
use crate::spec_patch::spec_merge_patch;

const APIKEYS: &str = "apikeys.portcullis.dev";
const GATEWAYROUTES: &str = "gatewayroutes.portcullis.dev";

/// Attempts of one update before a run of conflicting writes is reported.
const UPDATE_ATTEMPTS: u32 = 5;

/// Maximum time to wait for a TCP connection to the API server.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A namespace of a cluster.
pub struct ClusterStore {
    client: Client,
    namespace: String,
    server: String,
}

/// Verb, resource and object name of a request, for its error messages.
#[derive(Clone, Copy)]
struct Request<'a> {
    verb: &'static str,
    resource: &'static str,
    name: Option<&'a str>,
}

impl ClusterStore {
    /// Loads the kubeconfig as kubectl does and connects to its cluster.
    ///
    /// Without `--kubeconfig` and `--context` the configuration is inferred:
    /// `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster service
    /// account. The namespace is `-n`, else the context's namespace, else
    /// `default`.
    pub async fn connect(target: &TargetArgs) -> anyhow::Result<Self> {
        let mut config = load_config(target).await?;
        config.connect_timeout = Some(target.request_timeout.min(MAX_CONNECT_TIMEOUT));
        config.read_timeout = Some(target.request_timeout);
        config.write_timeout = Some(target.request_timeout);

        let server = config.cluster_url.to_string();
        let namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .with_context(|| format!("cannot create a client for the API server at {server}"))?;

        Ok(ClusterStore {
            client,
            namespace,
            server: server.trim_end_matches('/').to_owned(),
        })
    }

    /// Namespace that the command works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn keys(&self) -> Api<ApiKey> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the ApiKey. The API server rejects the request if the name
    /// is taken, so an existing ApiKey is never replaced.
    pub async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        let name = key.metadata.name.as_deref();
        self.keys()
            .create(&params, key)
            .await
            .map_err(|error| self.classify(error, Request::new("create", APIKEYS, name)))?;
        Ok(())
    }

    /// Reads the ApiKey, edits its spec and writes the changed fields as a
    /// JSON merge patch. The patch carries the `resourceVersion` that was
    /// read, so a concurrent change fails it with 409 Conflict. Then the
    /// read and edit run again, up to [`UPDATE_ATTEMPTS`] times.
    pub async fn update<T>(
        &self,
        name: &str,
        mut edit: impl FnMut(&mut ApiKeySpec) -> Result<T, String>,
    ) -> Result<Updated<T>, StoreError> {
        let api = self.keys();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };

        for _ in 0..UPDATE_ATTEMPTS {
            let current = api
                .get(name)
                .await
                .map_err(|error| self.classify(error, Request::new("get", APIKEYS, Some(name))))?;

            let before = current.spec;
            let mut after = before.clone();
            let outcome = edit(&mut after).map_err(|message| StoreError::Invalid {
                name: name.to_owned(),
                message,
            })?;

            let spec_patch = spec_merge_patch(&before, &after);
            if spec_patch.is_empty() {
                return Ok(Updated {
                    before,
                    after,
                    outcome,
                });
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": spec_patch,
            });

            match api.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    return Ok(Updated {
                        before,
                        after,
                        outcome,
                    });
                }
                Err(kube::Error::Api(status)) if is_conflict(&status) => continue,
                Err(error) => {
                    return Err(self.classify(error, Request::new("patch", APIKEYS, Some(name))));
                }
            }
        }

        Err(StoreError::Conflict {
            name: name.to_owned(),
            attempts: UPDATE_ATTEMPTS,
        })
    }

    /// Lists the ApiKeys of the namespace.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let list = self
            .keys()
            .list(&ListParams::default())
            .await
            .map_err(|error| self.classify(error, Request::new("list", APIKEYS, None)))?;
        Ok(list.items)
    }

    /// Lists the GatewayRoutes of the namespace.
    pub async fn list_routes(&self) -> Result<Vec<GatewayRoute>, StoreError> {
        let api: Api<GatewayRoute> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|error| self.classify(error, Request::new("list", GATEWAYROUTES, None)))?;
        Ok(list.items)
    }

    /// Converts a client error into a [`StoreError`] that names what failed
    /// and what to do.
    fn classify(&self, error: kube::Error, request: Request<'_>) -> StoreError {
        let status = match error {
            kube::Error::Api(status) => status,
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                return StoreError::Unreachable {
                    server: self.server.clone(),
                    cause: root_cause(&error),
                };
            }
            kube::Error::Auth(_) => {
                return StoreError::Other(anyhow::Error::new(error).context(
                    "cannot get credentials for the kubeconfig user; check the user entry of the \
                     current context",
                ));
            }
            other => {
                return StoreError::Other(anyhow::Error::new(other).context(format!(
                    "{} {} request to the API server at {} failed",
                    request.verb, request.resource, self.server
                )));
            }
        };

        let name = request.name.unwrap_or_default().to_owned();
        match (status.code, status.reason.as_str()) {
            (404, _) if names_object(&status) => StoreError::NotFound {
                name,
                namespace: self.namespace.clone(),
                location: self.location(),
            },
            (404, _) => StoreError::CrdMissing {
                server: self.server.clone(),
                resource: request.resource,
            },
            (409, "AlreadyExists") => StoreError::AlreadyExists {
                name,
                namespace: self.namespace.clone(),
                location: self.location(),
            },
            (403, _) => StoreError::Forbidden {
                verb: request.verb,
                resource: request.resource,
                namespace: self.namespace.clone(),
                message: status.message.clone(),
            },
            (401, _) => StoreError::Unauthorized {
                server: self.server.clone(),
                message: status.message.clone(),
            },
            (422, _) => StoreError::Invalid {
                name,
                message: format!("the API server rejected it: {}", status.message),
            },
            (code, _) => StoreError::Other(anyhow::anyhow!(
                "{} {} in namespace {:?} failed with HTTP {code}: {}",
                request.verb,
                request.resource,
                self.namespace,
                status.message
            )),
        }
    }

    fn location(&self) -> String {
        format!("the cluster at {}", self.server)
    }
}

impl<'a> Request<'a> {
    fn new(verb: &'static str, resource: &'static str, name: Option<&'a str>) -> Self {
        Request {
            verb,
            resource,
            name,
        }
    }
}

/// Loads the client configuration. Errors are formatted into the message
/// instead of chained, because the kube error types already include their
/// sources in their messages.
async fn load_config(target: &TargetArgs) -> anyhow::Result<Config> {
    if target.kubeconfig.is_none() && target.context.is_none() {
        return Config::infer().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot load a kubeconfig: {}. Set KUBECONFIG or pass --kubeconfig, \
                 or use --config DIR to edit a config directory",
                error
            )
        });
    }

    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &target.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|error| {
                anyhow::anyhow!("cannot read kubeconfig {}: {}", path.display(), error)
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|error| {
                    anyhow::anyhow!("cannot use kubeconfig {}: {}", path.display(), error)
                })
        }
        None => Config::from_kubeconfig(&options).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot use the kubeconfig from KUBECONFIG or ~/.kube/config: {}",
                error
            )
        }),
    }
}

/// Returns whether a 404 is about a named object rather than a resource
/// type the server does not serve. The API server names the object in the status
/// details of a missing object, and sends no details for an unknown type.
fn names_object(status: &Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|details| !details.name.is_empty())
}

fn is_conflict(status: &Status) -> bool {
    status.code == 409 && status.reason == "Conflict"
}

/// Message of the innermost error, for example `Connection refused (os
/// error 111)`. The outer errors of the HTTP stack repeat it or add little.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
