//! `portcullis key` against a Kubernetes API server, run as the real binary.
//!
//! The server comes from `PORTCULLIS_E2E_KUBECONFIG`, which every command
//! here receives as `KUBECONFIG`. A plain `KUBECONFIG` is never used, so a
//! developer's own cluster is not touched by accident. Without it the tests that need a
//! server print one line and pass, unless `PORTCULLIS_E2E_REQUIRED=1`, which
//! makes them fail. Each test works in its own namespace, so the tests can
//! run in parallel. `kubectl` must be on PATH to set up and read back
//! objects.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;
use portcullis_compile::KeyHash;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_portcullis");

/// Returns whether a cluster is configured. Without one, prints why the
/// calling test is skipped, or panics if `PORTCULLIS_E2E_REQUIRED=1`.
fn cluster_available(test: &str) -> bool {
    if test_kubeconfig().is_some() {
        install_crds();
        return true;
    }
    if std::env::var("PORTCULLIS_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: PORTCULLIS_E2E_KUBECONFIG is not set but PORTCULLIS_E2E_REQUIRED=1");
    }
    println!(
        "skipped {test}: PORTCULLIS_E2E_KUBECONFIG is not set, so there is no API server to test against"
    );
    false
}

/// Applies the CRDs once per test binary and waits until they are served.
fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crds = portcullis(&["crds"], None);
        assert!(crds.status.success(), "portcullis crds failed");
        let applied = kubectl_with_input(&["apply", "-f", "-"], &crds.stdout);
        assert!(
            applied.status.success(),
            "kubectl apply of the CRDs failed: {}",
            text(&applied.stderr)
        );
        let waited = kubectl(&[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "crd/apikeys.portcullis.dev",
            "crd/gatewayroutes.portcullis.dev",
        ]);
        assert!(waited.status.success(), "{}", text(&waited.stderr));
    });
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn portcullis(args: &[&str], input: Option<&[u8]>) -> Output {
    run(Command::new(BINARY).args(args), input)
}

fn kubectl(args: &[&str]) -> Output {
    run(Command::new("kubectl").args(args), None)
}

fn kubectl_with_input(args: &[&str], input: &[u8]) -> Output {
    run(Command::new("kubectl").args(args), Some(input))
}

/// Returns the kubeconfig of the test cluster, if one is configured.
fn test_kubeconfig() -> Option<String> {
    std::env::var("PORTCULLIS_E2E_KUBECONFIG")
        .ok()
        .filter(|v| !v.is_empty())
}

fn run(command: &mut Command, input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let explicit = command.get_envs().any(|(name, _)| name == "KUBECONFIG");
    if !explicit && let Some(kubeconfig) = test_kubeconfig() {
        command.env("KUBECONFIG", kubeconfig);
    }
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A namespace of its own for one test, deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn create(label: &str) -> Namespace {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let unique = nanos ^ std::process::id() ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("keys-{label}-{unique:08x}");
        let created = kubectl(&["create", "namespace", &name]);
        assert!(created.status.success(), "{}", text(&created.stderr));
        Namespace(name)
    }

    fn name(&self) -> &str {
        &self.0
    }

    /// Runs `portcullis key ARGS -n NAMESPACE`.
    fn key(&self, args: &[&str]) -> Output {
        self.key_with_input(args, None)
    }

    fn key_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut full = vec!["key"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-n", self.name()]);
        portcullis(&full, input)
    }

    /// Runs a key command that must succeed and returns its stdout.
    fn key_ok(&self, args: &[&str]) -> String {
        let output = self.key(args);
        assert!(
            output.status.success(),
            "portcullis key {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs a key command that must fail and returns its stderr. A failed
    /// command must not print a key.
    fn key_err(&self, args: &[&str]) -> String {
        let output = self.key(args);
        assert!(
            !output.status.success(),
            "portcullis key {args:?} succeeded but should fail"
        );
        assert!(
            output.stdout.is_empty(),
            "a failed command printed to stdout"
        );
        text(&output.stderr)
    }

    /// Creates a key and returns it.
    fn create_key(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", name];
        args.extend_from_slice(extra);
        printed_key(&self.key_ok(&args))
    }

    /// Reads an ApiKey with `kubectl get -o json`, managed fields included.
    fn get_key(&self, name: &str) -> Value {
        self.kubectl_json(&["get", "apikey", name, "--show-managed-fields"])
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend_from_slice(&["-n", self.name(), "-o", "json"]);
        let output = kubectl(&full);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn apply(&self, yaml: &str) {
        let output = kubectl_with_input(&["apply", "-n", self.name(), "-f", "-"], yaml.as_bytes());
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

fn printed_key(stdout: &str) -> String {
    let key = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stdout does not end with a newline: {stdout:?}"));
    assert_eq!(key.len(), 43, "unexpected stdout {stdout:?}");
    key.to_owned()
}

fn spec_hash(key: &str) -> String {
    KeyHash::of_key(key.as_bytes()).to_spec_string()
}

/// Parses an RFC 3339 time field into seconds since the Unix epoch.
fn epoch_seconds(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    text.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{text:?} is not an RFC 3339 time: {e}"))
        .as_second()
}

fn now_seconds() -> i64 {
    Timestamp::now().as_second()
}

/// Asserts that two times, in seconds since the epoch, are less than a
/// minute apart.
fn assert_near(seconds: i64, expected: i64) {
    let difference = (seconds - expected).abs();
    assert!(
        difference < 60,
        "{seconds} is {difference} s away from {expected}"
    );
}

/// Writes a copy of the current kubeconfig to `dir`, changed by `edit`, and
/// returns its path.
fn edited_kubeconfig(dir: &Path, edit: impl FnOnce(&mut serde_yaml::Value)) -> PathBuf {
    let source = test_kubeconfig().unwrap();
    let source = source.split(':').next().unwrap();
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(source).unwrap()).unwrap();
    edit(&mut config);
    let path = dir.join("kubeconfig");
    fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// Returns the current context's entry of a parsed kubeconfig.
fn current_context(config: &mut serde_yaml::Value) -> &mut serde_yaml::Value {
    let current = config["current-context"].as_str().unwrap().to_owned();
    config["contexts"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == current.as_str())
        .map(|c| &mut c["context"])
        .unwrap()
}

#[test]
fn cluster_create_stores_hash() {
    if !cluster_available("cluster_create_stores_hash") {
        return;
    }
    let namespace = Namespace::create("create");

    let key = namespace.create_key(
        "partner",
        &[
            "--scope",
            "deploy",
            "--expires",
            "30d",
            "--description",
            "Reporting partner",
        ],
    );

    let stored = namespace.get_key("partner");
    let spec = &stored["spec"];
    assert_eq!(spec["keyHash"], spec_hash(&key));
    assert_eq!(spec["scope"], "deploy");
    assert_eq!(spec["active"], true);
    assert_eq!(spec["description"], "Reporting partner");
    assert_near(
        epoch_seconds(&spec["expiresAt"]),
        now_seconds() + 30 * 86_400,
    );
    assert!(spec.get("previousKeyHashes").is_none());
    let managers: Vec<&Value> = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["manager"])
        .collect();
    assert!(
        managers.contains(&&Value::from("portcullis")),
        "{managers:?}"
    );
}

#[test]
fn cluster_create_existing_fails() {
    if !cluster_available("cluster_create_existing_fails") {
        return;
    }
    let namespace = Namespace::create("exists");
    let key = namespace.create_key("partner", &[]);

    let stderr = namespace.key_err(&["create", "partner"]);

    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("portcullis key rotate partner"), "{stderr}");
    assert!(stderr.contains(namespace.name()), "{stderr}");
    assert_eq!(
        namespace.get_key("partner")["spec"]["keyHash"],
        spec_hash(&key)
    );
}

#[test]
fn cluster_import_reads_stdin() {
    if !cluster_available("cluster_import_reads_stdin") {
        return;
    }
    let namespace = Namespace::create("import");
    let value = "legacy-key-from-another-gateway-0123456789";

    let output =
        namespace.key_with_input(&["import", "legacy"], Some(format!("{value}\n").as_bytes()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let short = namespace.key_with_input(&["import", "short"], Some(b"too-short\n"));

    assert_eq!(
        namespace.get_key("legacy")["spec"]["keyHash"],
        spec_hash(value)
    );
    assert!(!short.status.success());
    assert!(text(&short.stderr).contains("at least 32"));
    let missing = kubectl(&["get", "apikey", "short", "-n", namespace.name()]);
    assert!(!missing.status.success(), "a too-short key was stored");
}

#[test]
fn cluster_rotate_replaces_hash() {
    if !cluster_available("cluster_rotate_replaces_hash") {
        return;
    }
    let namespace = Namespace::create("rotate");
    let first = namespace.create_key("partner", &["--description", "kept"]);

    let second = printed_key(&namespace.key_ok(&["rotate", "partner"]));

    let spec = &namespace.get_key("partner")["spec"];
    assert_ne!(first, second);
    assert_eq!(spec["keyHash"], spec_hash(&second));
    assert!(spec.get("previousKeyHashes").is_none(), "{spec}");
    assert_eq!(spec["description"], "kept");
    assert_eq!(spec["active"], true);
}

#[test]
fn cluster_rotate_grace_keeps_old_hash() {
    if !cluster_available("cluster_rotate_grace_keeps_old_hash") {
        return;
    }
    let namespace = Namespace::create("grace");
    let first = namespace.create_key("partner", &[]);

    let second = printed_key(&namespace.key_ok(&["rotate", "partner", "--grace", "1h"]));

    let spec = &namespace.get_key("partner")["spec"];
    assert_eq!(spec["keyHash"], spec_hash(&second));
    let previous = spec["previousKeyHashes"].as_array().unwrap();
    assert_eq!(previous.len(), 1, "{spec}");
    assert_eq!(previous[0]["hash"], spec_hash(&first));
    assert_near(
        epoch_seconds(&previous[0]["expiresAt"]),
        now_seconds() + 3_600,
    );
}

#[test]
fn cluster_rotate_prunes_expired_hashes() {
    if !cluster_available("cluster_rotate_prunes_expired_hashes") {
        return;
    }
    let namespace = Namespace::create("prune");
    let first = namespace.create_key("partner", &[]);
    let second = printed_key(&namespace.key_ok(&["rotate", "partner", "--grace", "1s"]));
    std::thread::sleep(Duration::from_secs(3));

    let third = printed_key(&namespace.key_ok(&["rotate", "partner", "--grace", "1h"]));

    let spec = &namespace.get_key("partner")["spec"];
    let hashes: Vec<&Value> = spec["previousKeyHashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["hash"])
        .collect();
    assert_eq!(spec["keyHash"], spec_hash(&third));
    assert_eq!(hashes, vec![&Value::from(spec_hash(&second))]);
    assert!(!hashes.contains(&&Value::from(spec_hash(&first))));
}

#[test]
fn cluster_revoke_sets_inactive() {
    if !cluster_available("cluster_revoke_sets_inactive") {
        return;
    }
    let namespace = Namespace::create("revoke");
    let key = namespace.create_key("partner", &[]);

    namespace.key_ok(&["revoke", "partner"]);
    let again = namespace.key(&["revoke", "partner"]);

    let spec = &namespace.get_key("partner")["spec"];
    assert_eq!(spec["active"], false);
    assert_eq!(spec["keyHash"], spec_hash(&key));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already revoked"));
}

#[test]
fn cluster_missing_key_names_namespace() {
    if !cluster_available("cluster_missing_key_names_namespace") {
        return;
    }
    let namespace = Namespace::create("missing");

    for command in ["rotate", "revoke"] {
        let stderr = namespace.key_err(&[command, "ghost"]);
        assert!(stderr.contains("not found"), "{command}: {stderr}");
        assert!(stderr.contains(namespace.name()), "{command}: {stderr}");
    }
}

#[test]
fn cluster_list_shows_routes() {
    if !cluster_available("cluster_list_shows_routes") {
        return;
    }
    let namespace = Namespace::create("list");
    let key = namespace.create_key("partner", &[]);
    namespace.create_key("unused", &["--scope", "deploy"]);
    namespace.apply(
        "apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: reports}
spec:
  method: GET
  path: /reports
  allowedApiKeyIds: [partner]
  target: {service: reports, port: 8080}
",
    );

    let json: Value = serde_json::from_str(&namespace.key_ok(&["list", "-o", "json"])).unwrap();
    let table = namespace.key_ok(&["list"]);

    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "partner");
    assert_eq!(
        listed[0]["fingerprint"],
        KeyHash::of_key(key.as_bytes()).fingerprint()
    );
    assert_eq!(listed[0]["routes"], serde_json::json!(["reports"]));
    assert_eq!(listed[1]["name"], "unused");
    assert_eq!(listed[1]["scope"], "deploy");
    assert_eq!(listed[1]["routes"], serde_json::json!([]));
    assert!(table.contains("reports"), "{table}");
    assert!(!table.contains(&key), "the table contains the key");
    assert!(
        !json.to_string().contains(&key),
        "the JSON contains the key"
    );
}

#[test]
fn cluster_never_stores_plaintext() {
    if !cluster_available("cluster_never_stores_plaintext") {
        return;
    }
    let namespace = Namespace::create("plaintext");
    let imported = "imported-key-value-0123456789-abcdefghij";
    let mut keys = vec![imported.to_owned()];

    keys.push(namespace.create_key("partner", &["--description", "partner"]));
    keys.push(printed_key(&namespace.key_ok(&["rotate", "partner"])));
    keys.push(printed_key(
        &namespace.key_ok(&["rotate", "partner", "--grace", "1h"]),
    ));
    let output = namespace.key_with_input(&["import", "legacy"], Some(imported.as_bytes()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    namespace.key_ok(&["revoke", "legacy"]);
    let listed = namespace.key_ok(&["list", "-o", "yaml"]);

    let objects = namespace.kubectl_json(&["get", "apikeys,events", "--show-managed-fields"]);
    let mut dumps = vec![objects.to_string(), listed];
    for name in ["partner", "legacy"] {
        let path = format!(
            "/apis/portcullis.dev/v1alpha1/namespaces/{}/apikeys/{name}",
            namespace.name()
        );
        let raw = kubectl(&["get", "--raw", &path]);
        assert!(raw.status.success(), "{}", text(&raw.stderr));
        dumps.push(text(&raw.stdout));
    }

    assert_eq!(objects["items"].as_array().unwrap().len(), 2, "{objects}");
    for dump in &dumps {
        for key in &keys {
            assert!(
                !dump.contains(key.as_str()),
                "a stored object contains a key"
            );
        }
    }
}

#[test]
fn cluster_namespace_from_context() {
    if !cluster_available("cluster_namespace_from_context") {
        return;
    }
    let namespace = Namespace::create("context");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = edited_kubeconfig(dir.path(), |config| {
        current_context(config)["namespace"] = namespace.name().into();
    });

    let output = portcullis(
        &[
            "key",
            "create",
            "partner",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        None,
    );

    assert!(output.status.success(), "{}", text(&output.stderr));
    let key = printed_key(&text(&output.stdout));
    assert_eq!(
        namespace.get_key("partner")["spec"]["keyHash"],
        spec_hash(&key)
    );
}

#[test]
fn cluster_forbidden_names_verb_and_namespace() {
    if !cluster_available("cluster_forbidden_names_verb_and_namespace") {
        return;
    }
    let namespace = Namespace::create("rbac");
    namespace.create_key("partner", &[]);
    let user = format!("viewer-{}", namespace.name());
    namespace.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: apikey-viewer}}
rules:
- apiGroups: [portcullis.dev]
  resources: [apikeys]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: apikey-viewer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: apikey-viewer}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"
    ));
    // The admin user of the kubeconfig may impersonate, so the commands run
    // as a user bound only to the Role above.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = edited_kubeconfig(dir.path(), |config| {
        let user_name = current_context(config)["user"].as_str().unwrap().to_owned();
        let users = config["users"].as_sequence_mut().unwrap();
        let entry = users
            .iter_mut()
            .find(|u| u["name"] == user_name.as_str())
            .unwrap();
        entry["user"]["as"] = user.clone().into();
    });
    let as_viewer = |args: &[&str]| {
        let mut full = vec!["key"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-n", namespace.name()]);
        full.extend_from_slice(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
        portcullis(&full, None)
    };

    // RBAC bindings take effect a few milliseconds after they are written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotate = loop {
        let output = as_viewer(&["rotate", "partner"]);
        if text(&output.stderr).contains("may not patch") || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let create = as_viewer(&["create", "other"]);
    let list = as_viewer(&["list", "-o", "json"]);

    let stderr = text(&rotate.stderr);
    assert!(!rotate.status.success());
    assert!(rotate.stdout.is_empty(), "a key was printed but not stored");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(
        stderr.contains("may not patch apikeys.portcullis.dev"),
        "{stderr}"
    );
    assert!(stderr.contains(namespace.name()), "{stderr}");
    assert!(
        stderr.contains(&user),
        "the API server's message is missing: {stderr}"
    );

    let stderr = text(&create.stderr);
    assert!(!create.status.success());
    assert!(create.stdout.is_empty());
    assert!(
        stderr.contains("may not create apikeys.portcullis.dev"),
        "{stderr}"
    );

    // Reading keys is allowed; reading routes is not, so routes are unknown.
    assert!(list.status.success(), "{}", text(&list.stderr));
    let json: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(json[0]["name"], "partner");
    assert_eq!(json[0]["routes"], Value::Null);
    assert!(
        text(&list.stderr).contains("gatewayroutes"),
        "{}",
        text(&list.stderr)
    );
}

/// Needs no cluster: the kubeconfig points at a free port with no listener.
#[test]
fn cluster_unreachable_names_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}
users:
- name: local
  user: {{token: not-a-real-token}}
contexts:
- name: local
  context: {{cluster: local, user: local}}
current-context: local
"
        ),
    )
    .unwrap();

    let output = portcullis(
        &[
            "key",
            "rotate",
            "partner",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        None,
    );

    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "a key was printed but not stored");
    assert!(
        stderr.contains("cannot reach the Kubernetes API server"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("https://127.0.0.1:{port}")),
        "{stderr}"
    );
}
