//! Shared set-up of the cluster tests: the test API server, the controller
//! in process, a local upstream function and small HTTP helpers.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Scope;
use kube::{Api, Client, Config};
use portcullis_api::GatewayRoute;
use portcullis_controller::RunArgs;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Namespace of the controller's ServiceAccount and Lease in `rbac.yaml`.
pub const SYSTEM_NAMESPACE: &str = "portcullis-system";
/// ServiceAccount user the controller runs as; `rbac.yaml` binds it.
pub const CONTROLLER_USER: &str = "system:serviceaccount:portcullis-system:portcullis";
/// A second ServiceAccount user whose permissions a test chooses.
pub const PARTIAL_USER: &str = "system:serviceaccount:portcullis-system:portcullis-partial";

const TOKENS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/envtest-tokens.csv");
const RBAC_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml");
const FIELD_MANAGER: &str = "portcullis-tests";

/// The test API server, reached with the admin kubeconfig.
pub struct Cluster {
    pub admin: Client,
    admin_kubeconfig: PathBuf,
    server: String,
    ca_data: String,
    work_dir: PathBuf,
}

static SETUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Connects to the test API server named by `PORTCULLIS_E2E_KUBECONFIG` and
/// installs the CRDs and `rbac.yaml` once per run. A plain `KUBECONFIG` is
/// never used, so a developer's own cluster is not touched by accident.
///
/// Returns `None` (the test is skipped) when it is not set, unless
/// `PORTCULLIS_E2E_REQUIRED=1`, which turns the skip into a failure. Only
/// an API server on a loopback address is used.
pub async fn cluster() -> Option<Cluster> {
    init_logging();
    let required = std::env::var("PORTCULLIS_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let path = std::env::var_os("PORTCULLIS_E2E_KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let Some(path) = path else {
        assert!(
            !required,
            "PORTCULLIS_E2E_REQUIRED=1 but PORTCULLIS_E2E_KUBECONFIG is not set"
        );
        println!(
            "skipped: set PORTCULLIS_E2E_KUBECONFIG to a test API server (see tests/cluster/main.rs)"
        );
        return None;
    };

    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let (server, ca_data) = current_cluster(&kubeconfig);
    if !is_loopback(&server) {
        assert!(
            !required,
            "the kubeconfig {} points at {server}, not a loopback test API server",
            path.display()
        );
        println!(
            "skipped: {} points at {server}, not a loopback test API server",
            path.display()
        );
        return None;
    }

    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("admin kubeconfig is usable");
    let admin = Client::try_from(config).expect("admin client");
    SETUP.get_or_init(|| install(admin.clone())).await;

    // Cargo's scratch directory for integration tests, inside target/.
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portcullis-controller");
    std::fs::create_dir_all(&work_dir).expect("create the test scratch directory");
    Some(Cluster {
        admin,
        admin_kubeconfig: path,
        server,
        ca_data,
        work_dir,
    })
}

fn init_logging() {
    // Controller logs go to stderr uncaptured, so only on request.
    if std::env::var_os("RUST_LOG").is_some() {
        portcullis_gateway::logging::init(portcullis_gateway::logging::LogFormat::Text);
    }
}

fn current_cluster(kubeconfig: &Kubeconfig) -> (String, String) {
    let context_name = kubeconfig.current_context.clone().unwrap_or_default();
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .expect("kubeconfig has a current context");
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .expect("kubeconfig names the current cluster");
    let server = cluster.server.expect("cluster has a server");
    let ca_data = cluster
        .certificate_authority_data
        .expect("the test kubeconfig embeds its CA (certificate-authority-data)");
    (server, ca_data)
}

fn is_loopback(server: &str) -> bool {
    let Ok(uri) = server.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// Installs CRDs, the controller's namespace and `rbac.yaml`, and checks that
/// the API server has the test token users.
async fn install(admin: Client) {
    apply_yaml(&admin, &portcullis_api::crds_yaml()).await;
    wait_for_crds(&admin).await;

    ensure_namespace(&admin, SYSTEM_NAMESPACE).await;
    let rbac = std::fs::read_to_string(RBAC_FILE).expect("rbac.yaml is readable");
    apply_yaml(&admin, &rbac).await;

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token_of(CONTROLLER_USER),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let answer = Api::<TokenReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview as admin");
    let authenticated = answer.status.and_then(|s| s.authenticated) == Some(true);
    assert!(
        authenticated,
        "the test API server lacks this crate's test users: restart it with ENVTEST_EXTRA_TOKENS={TOKENS_FILE}"
    );
}

async fn wait_for_crds(admin: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in ["gatewayroutes.portcullis.dev", "apikeys.portcullis.dev"] {
        eventually(Duration::from_secs(20), "CRD to be established", || async {
            let crd = crds.get(name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
    let routes: Api<GatewayRoute> = Api::all(admin.clone());
    eventually(
        Duration::from_secs(20),
        "GatewayRoutes to be served",
        || async { routes.list(&Default::default()).await.ok().map(drop) },
    )
    .await;
}

/// Returns the token of a user of `envtest-tokens.csv`.
pub fn token_of(user: &str) -> String {
    let text = std::fs::read_to_string(TOKENS_FILE).expect("tokens file is readable");
    text.lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ',');
            let token = fields.next()?;
            (fields.next()? == user).then(|| token.to_owned())
        })
        .unwrap_or_else(|| panic!("no token for {user} in {TOKENS_FILE}"))
}

impl Cluster {
    /// Creates a namespace with a unique name that starts with `prefix`.
    pub async fn namespace(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 100_000;
        let name = format!(
            "{prefix}-{}-{suffix}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ensure_namespace(&self.admin, &name).await;
        name
    }

    /// Deletes a namespace created by [`Cluster::namespace`].
    pub async fn delete_namespace(&self, name: &str) {
        let _ = Api::<Namespace>::all(self.admin.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }

    /// Writes a kubeconfig for `user` (a user of `envtest-tokens.csv`) whose
    /// only context is `portcullis-test`, and returns its path.
    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        self.kubeconfig_via(user, &self.server)
    }

    /// Like [`Cluster::kubeconfig_for`], but reaching the API server at
    /// `server` (a proxy in front of it).
    pub fn kubeconfig_via(&self, user: &str, server: &str) -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let token = token_of(user);
        let file_name = format!(
            "{}-{}-{}.kubeconfig",
            user.replace(':', "_"),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.work_dir.join(file_name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: test-user\n  user:\n    token: {token}\ncontexts:\n- name: portcullis-test\n  context: {{cluster: test, user: test-user, namespace: {ns}}}\n",
            ca = self.ca_data,
            ns = SYSTEM_NAMESPACE,
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Returns a client acting as `user`.
    pub async fn client_for(&self, user: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig_for(user)).unwrap();
        let options = KubeConfigOptions {
            context: Some("portcullis-test".into()),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Address of the API server, `host:port`.
    pub fn server_address(&self) -> String {
        let uri: http::Uri = self.server.parse().unwrap();
        uri.authority().unwrap().to_string()
    }

    /// Path of the admin kubeconfig, for kubectl.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Starts a controller in process as `user`, watching `namespace`.
    pub async fn start_controller(
        &self,
        user: &str,
        namespace: &str,
        lease: &str,
        identity: &str,
    ) -> Controller {
        Controller::start(&self.kubeconfig_for(user), namespace, lease, identity).await
    }
}

async fn ensure_namespace(admin: &Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))
    .unwrap();
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("failed to create namespace {name}: {error}"),
    }
}

/// Applies a multi-document YAML stream with server-side apply as admin.
pub async fn apply_yaml(client: &Client, yaml: &str) {
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(document).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("not a Kubernetes object: {e}: {value}"));
        let types = object
            .types
            .clone()
            .expect("object has apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
        let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("kind {} is not served: {e}", types.kind));
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.metadata.name.clone().expect("object has a name");
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name} failed: {e}", types.kind));
    }
}

/// Applies YAML with `kubectl apply` when kubectl is installed, else with
/// server-side apply through the API. Returns which one ran.
pub async fn kubectl_apply(cluster: &Cluster, yaml: &str) -> &'static str {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let spawned = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        apply_yaml(&cluster.admin, yaml).await;
        return "server-side apply (kubectl not installed)";
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .expect("write to kubectl");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("kubectl ran");
    assert!(
        output.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    "kubectl apply"
}

/// Applies a Service named `name` with port 80 (`http`) and an EndpointSlice that
/// sends it to `upstream`, since the test API server runs no EndpointSlice
/// controller.
pub async fn create_backend(client: &Client, namespace: &str, name: &str, upstream: SocketAddr) {
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": upstream.port()}]},
    }))
    .unwrap();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(name, &apply, &Patch::Apply(&service))
        .await
        .expect("apply Service");

    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-1"),
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": upstream.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [upstream.ip().to_string()], "conditions": {"ready": true}}],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .patch(&format!("{name}-1"), &apply, &Patch::Apply(&slice))
        .await
        .expect("apply EndpointSlice");
}

/// Creates a GatewayRoute from its spec.
pub async fn create_route(client: &Client, namespace: &str, name: &str, spec: serde_json::Value) {
    let route: GatewayRoute = serde_json::from_value(json!({
        "apiVersion": portcullis_api::API_VERSION,
        "kind": "GatewayRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("valid GatewayRoute");
    Api::<GatewayRoute>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &route)
        .await
        .unwrap_or_else(|e| panic!("create GatewayRoute {name}: {e}"));
}

/// Returns `sha256:<hex>` of a key, as `keyHash` expects.
pub fn key_hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// A controller running in process.
pub struct Controller {
    pub traffic: String,
    pub admin: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Controller {
    /// Starts a controller with the flags a Deployment would pass.
    pub async fn start(
        kubeconfig: &Path,
        namespace: &str,
        lease: &str,
        identity: &str,
    ) -> Controller {
        Controller::start_with(kubeconfig, namespace, lease, identity, &[]).await
    }

    /// Like [`Controller::start`], with `extra` flags appended.
    pub async fn start_with(
        kubeconfig: &Path,
        namespace: &str,
        lease: &str,
        identity: &str,
        extra: &[&str],
    ) -> Controller {
        let mut flags = vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "portcullis-test",
            "--watch-namespaces",
            namespace,
            "--lease-namespace",
            SYSTEM_NAMESPACE,
            "--lease-name",
            lease,
            "--identity",
            identity,
            "--log-format",
            "text",
        ];
        flags.extend_from_slice(extra);
        let args = RunArgs::try_parse_from(flags).expect("valid flags");
        let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let traffic_url = format!("http://{}", traffic.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(portcullis_controller::run_with_listeners(
            args,
            traffic,
            admin,
            shutdown.clone(),
        ));
        Controller {
            traffic: traffic_url,
            admin: admin_url,
            shutdown,
            task,
        }
    }

    /// Stops the controller as SIGTERM would and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("controller stops within 20 s")
            .expect("controller task did not panic")
            .expect("controller exited cleanly");
    }

    /// Waits until `/readyz` returns 200.
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.admin);
        eventually(
            Duration::from_secs(30),
            "controller to be ready",
            || async { (get(&url, &[]).await.0 == StatusCode::OK).then_some(()) },
        )
        .await;
    }

    /// Returns the value of one sample of `/metrics`, 0 when absent.
    /// `series` is the metric name with its labels as printed, for example
    /// `portcullis_status_writes_total{kind="ApiKey"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body, _) = get(&format!("{}/metrics", self.admin), &[]).await;
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }

    /// Sends a GET through the gateway.
    pub async fn call(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, BTreeMap<String, String>) {
        get(&format!("{}{path}", self.traffic), headers).await
    }
}

/// Sends a GET and returns status, body and headers (lowercase names).
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, BTreeMap<String, String>) {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    });
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.text().await.unwrap_or_default();
    (status, body, headers)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after
/// `timeout` naming `condition`.
pub async fn eventually<T, F, Fut>(timeout: Duration, condition: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {condition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A function server on 127.0.0.1 that echoes what the gateway sent as
/// JSON: `path`, `principal`, `tenant` and whether credentials arrived.
pub struct Upstream {
    pub address: SocketAddr,
    shutdown: CancellationToken,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(portcullis_gateway::server::serve(
            listener,
            shutdown.clone(),
            |request, _peer| async move {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let body = json!({
                    "path": request.uri().path(),
                    "principal": header("x-portcullis-principal"),
                    "tenant": header("x-portcullis-tenant"),
                    "apiKeyForwarded": header("x-api-key").is_some(),
                });
                let mut response = Response::new(portcullis_gateway::body::full(body.to_string()));
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                response
            },
        ));
        Upstream { address, shutdown }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Returns the `status` of `namespace/name` as JSON. `plural` is
/// `gatewayroutes` or `apikeys`.
pub async fn status_of(
    client: &Client,
    namespace: &str,
    plural: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let kind = if plural == "gatewayroutes" {
        "GatewayRoute"
    } else {
        "ApiKey"
    };
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(portcullis_api::GROUP, portcullis_api::VERSION, kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    api.get(name).await.ok()?.data.get("status").cloned()
}

/// Returns `(status, reason)` of one condition in a status JSON.
pub fn condition(status: &serde_json::Value, kind: &str) -> Option<(String, String)> {
    status["conditions"].as_array()?.iter().find_map(|c| {
        (c["type"] == kind).then(|| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
    })
}
