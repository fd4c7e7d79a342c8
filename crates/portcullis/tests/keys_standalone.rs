//! `portcullis key` against a config directory, run as the real binary.
//!
//! The full cycle test also starts `portcullis serve` on the directory and a
//! local upstream HTTP server, and checks after each key command that the
//! data plane accepts and rejects the keys it should.

use std::fs;
use std::io::Write;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_api::ApiKey;
use portcullis_compile::KeyHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BINARY: &str = env!("CARGO_BIN_EXE_portcullis");

/// How long the data plane may take to apply a change to the directory.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `serve` may take to start and finish its first load.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `portcullis ARGS` with stdin closed.
fn portcullis(args: &[&str]) -> Output {
    portcullis_with_input(args, None)
}

/// Runs `portcullis ARGS`, writing `input` to its stdin when given.
fn portcullis_with_input(args: &[&str], input: Option<&str>) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("failed to start the portcullis binary");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs a key command on `dir` that must succeed, and returns its stdout.
fn key_command(dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["key"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", dir.to_str().unwrap()]);
    let output = portcullis(&full);
    assert!(
        output.status.success(),
        "portcullis {full:?} failed: {}",
        stderr_of(&output)
    );
    stdout_of(&output)
}

/// Runs a key command on `dir` that must fail, and returns its output.
fn failing_key_command(dir: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut full = vec!["key"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", dir.to_str().unwrap()]);
    let output = portcullis_with_input(&full, input);
    assert!(
        !output.status.success(),
        "portcullis {full:?} succeeded but should fail; stderr: {}",
        stderr_of(&output)
    );
    output
}

/// Strips the newline that ends a printed key and checks the key's form.
fn printed_key(stdout: &str) -> String {
    let key = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stdout does not end with a newline: {stdout:?}"));
    assert_eq!(key.len(), 43, "unexpected key length in {stdout:?}");
    assert!(!key.contains('\n'), "stdout contains more than the key");
    key.to_owned()
}

/// Reads the ApiKey named `name` from the YAML files in `dir`.
fn read_key(dir: &Path, name: &str) -> ApiKey {
    for entry in fs::read_dir(dir).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(document).unwrap();
            if value["kind"] == "ApiKey" && value["metadata"]["name"] == name {
                return serde_yaml::from_value(value).unwrap();
            }
        }
    }
    panic!("no ApiKey {name} in {}", dir.display());
}

/// Concatenates every file in `dir`.
fn all_files(dir: &Path) -> String {
    let mut text = String::new();
    for entry in fs::read_dir(dir).unwrap() {
        text.push_str(&fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

fn spec_hash(key: &str) -> String {
    KeyHash::of_key(key.as_bytes()).to_spec_string()
}

/// Writes a GatewayRoute that only `key_name` may call, and an
/// EndpointSlice that sends its traffic to `upstream_port` on 127.0.0.1.
fn write_route(dir: &Path, key_name: &str, upstream_port: u16) {
    let yaml = format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: hello
  namespace: default
spec:
  method: GET
  path: /hello
  authType: api-key
  allowedApiKeyIds: [{key_name}]
  target: {{service: hello, port: {upstream_port}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-1
  namespace: default
  labels:
    kubernetes.io/service-name: hello
addressType: IPv4
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
ports:
- name: http
  port: {upstream_port}
"
    );
    fs::write(dir.join("route.yaml"), yaml).unwrap();
}

/// Starts an HTTP/1.1 server on 127.0.0.1 that responds to every request
/// with 200 and the body `upstream`, and returns its port.
async fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                                content-length: 8\r\nconnection: close\r\n\r\nupstream";
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `portcullis serve`, stopped when dropped.
struct Serve {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Serve {
    /// Starts `serve` on `dir` and waits until `/readyz` returns 200.
    async fn start(dir: &Path, log_dir: &Path, client: &reqwest::Client) -> Serve {
        let port = free_port();
        let admin_port = free_port();
        let log = log_dir.join("serve.log");
        let child = Command::new(BINARY)
            .args(["serve", "--config", dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("failed to start portcullis serve");
        let mut serve = Serve { child, log, port };

        let url = format!("http://127.0.0.1:{admin_port}/readyz");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("portcullis serve exited with {status}: {}", serve.logs());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == 200
            {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "portcullis serve was not ready after {STARTUP_TIMEOUT:?}: {}",
            serve.logs()
        );
    }

    fn logs(&self) -> String {
        let stdout = fs::read_to_string(&self.log).unwrap_or_default();
        let stderr = fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("stdout:\n{stdout}\nstderr:\n{stderr}")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client of the data plane; never uses a proxy from the environment.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends `GET /gw/default/hello` with the key and returns the status code.
async fn call(client: &reqwest::Client, serve: &Serve, key: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}/gw/default/hello", serve.port);
    let response = client
        .get(&url)
        .header("X-Api-Key", key)
        .send()
        .await
        .expect("request to the data plane failed");
    response.status().as_u16()
}

/// Polls until a request with `key` gets `expected`, or fails after
/// `timeout` with the last status seen.
async fn wait_for_status(
    client: &reqwest::Client,
    serve: &Serve,
    key: &str,
    expected: u16,
    timeout: Duration,
    what: &str,
) {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        last = call(client, serve, key).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: expected {expected}, still {last} after {timeout:?}\n{}",
        serve.logs()
    );
}

#[tokio::test]
async fn key_cycle_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let upstream_port = start_upstream().await;
    write_route(dir.path(), "partner", upstream_port);
    let client = http_client();
    let serve = Serve::start(dir.path(), logs.path(), &client).await;

    let first = printed_key(&key_command(dir.path(), &["create", "partner"]));
    wait_for_status(&client, &serve, &first, 200, RELOAD_TIMEOUT, "created key").await;

    let second = printed_key(&key_command(dir.path(), &["rotate", "partner"]));
    wait_for_status(&client, &serve, &second, 200, RELOAD_TIMEOUT, "rotated key").await;
    assert_eq!(
        call(&client, &serve, &first).await,
        401,
        "the key replaced without --grace still works"
    );

    let third = printed_key(&key_command(
        dir.path(),
        &["rotate", "partner", "--grace", "2s"],
    ));
    let rotated_at = Instant::now();
    wait_for_status(
        &client,
        &serve,
        &third,
        200,
        RELOAD_TIMEOUT,
        "key rotated with grace",
    )
    .await;
    let old_status = call(&client, &serve, &second).await;
    assert!(
        rotated_at.elapsed() < Duration::from_secs(2),
        "the reload took longer than the grace period, so the grace check proves nothing"
    );
    assert_eq!(
        old_status, 200,
        "the old key stopped working during its grace period"
    );

    wait_for_status(
        &client,
        &serve,
        &second,
        401,
        RELOAD_TIMEOUT,
        "old key after its grace period",
    )
    .await;
    assert_eq!(call(&client, &serve, &third).await, 200);

    key_command(dir.path(), &["revoke", "partner"]);
    wait_for_status(&client, &serve, &third, 401, RELOAD_TIMEOUT, "revoked key").await;

    assert_eq!(call(&client, &serve, "not-a-key").await, 401);
}

#[test]
fn create_prints_only_key_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let output = portcullis(&[
        "key",
        "create",
        "partner",
        "--config",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));

    let key = printed_key(&stdout_of(&output));
    let stderr = stderr_of(&output);
    let fingerprint = KeyHash::of_key(key.as_bytes()).fingerprint();

    assert!(
        stderr.contains(&fingerprint),
        "stderr lacks the fingerprint: {stderr}"
    );
    assert!(
        stderr.contains("only this once"),
        "stderr lacks the warning: {stderr}"
    );
    assert!(!stderr.contains(&key), "stderr contains the key");
}

#[test]
fn create_stores_only_hash() {
    let dir = tempfile::tempdir().unwrap();

    let key = printed_key(&key_command(
        dir.path(),
        &[
            "create",
            "partner",
            "--scope",
            "deploy",
            "--expires",
            "2099-01-01T00:00:00Z",
            "--description",
            "Reporting partner",
        ],
    ));

    let stored = read_key(dir.path(), "partner");
    assert_eq!(stored.spec.key_hash, spec_hash(&key));
    assert_eq!(stored.spec.scope, portcullis_api::KeyScope::Deploy);
    assert_eq!(
        stored.spec.expires_at.as_deref(),
        Some("2099-01-01T00:00:00Z")
    );
    assert_eq!(
        stored.spec.description.as_deref(),
        Some("Reporting partner")
    );
    assert!(stored.spec.active);
    assert!(dir.path().join("apikey-partner.yaml").is_file());
    assert!(
        !all_files(dir.path()).contains(&key),
        "a file contains the key"
    );
}

#[test]
fn create_generates_different_keys() {
    let dir = tempfile::tempdir().unwrap();
    let first = printed_key(&key_command(dir.path(), &["create", "first"]));
    let second = printed_key(&key_command(dir.path(), &["create", "second"]));
    assert_ne!(first, second);
}

#[test]
fn create_existing_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    key_command(dir.path(), &["create", "partner"]);
    let before = all_files(dir.path());

    let output = failing_key_command(dir.path(), &["create", "partner"], None);

    let stderr = stderr_of(&output);
    assert!(
        output.stdout.is_empty(),
        "a key was printed although nothing was stored"
    );
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("portcullis key rotate partner"), "{stderr}");
    assert_eq!(all_files(dir.path()), before);
}

#[test]
fn create_rejects_invalid_name() {
    let dir = tempfile::tempdir().unwrap();

    let output = failing_key_command(dir.path(), &["create", "../escape"], None);

    assert!(stderr_of(&output).contains("invalid ApiKey name"));
    assert!(output.stdout.is_empty());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn create_rejects_past_expiry() {
    let dir = tempfile::tempdir().unwrap();

    let output = failing_key_command(
        dir.path(),
        &["create", "partner", "--expires", "2001-01-01T00:00:00Z"],
        None,
    );

    assert!(
        stderr_of(&output).contains("in the past"),
        "{}",
        stderr_of(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn import_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let value = "imported-key-value-with-40-characters-xx";
    let output = portcullis_with_input(
        &[
            "key",
            "import",
            "legacy",
            "--config",
            dir.path().to_str().unwrap(),
        ],
        Some(&format!("{value}\n")),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));

    assert!(output.stdout.is_empty(), "import printed to stdout");
    assert!(!stderr_of(&output).contains(value));
    assert_eq!(
        read_key(dir.path(), "legacy").spec.key_hash,
        spec_hash(value)
    );
}

#[test]
fn import_reads_env_variable() {
    let dir = tempfile::tempdir().unwrap();
    let value = "0123456789abcdef0123456789abcdef";
    let output = Command::new(BINARY)
        .args(["key", "import", "legacy", "--from-env", "LEGACY_KEY"])
        .args(["--config", dir.path().to_str().unwrap()])
        .env("LEGACY_KEY", value)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));

    assert_eq!(
        read_key(dir.path(), "legacy").spec.key_hash,
        spec_hash(value)
    );
}

#[test]
fn import_rejects_short_value() {
    let dir = tempfile::tempdir().unwrap();

    let output = failing_key_command(
        dir.path(),
        &["import", "legacy"],
        Some("only-31-characters-long-value-\n"),
    );

    let stderr = stderr_of(&output);
    assert!(stderr.contains("at least 32"), "{stderr}");
    assert!(
        !stderr.contains("only-31-characters"),
        "stderr echoes the value"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn import_rejects_missing_env_variable() {
    let dir = tempfile::tempdir().unwrap();

    let output = failing_key_command(
        dir.path(),
        &[
            "import",
            "legacy",
            "--from-env",
            "PORTCULLIS_TEST_UNSET_VARIABLE",
        ],
        None,
    );

    assert!(stderr_of(&output).contains("PORTCULLIS_TEST_UNSET_VARIABLE is not set"));
}

#[test]
fn rotate_missing_key_names_namespace() {
    let dir = tempfile::tempdir().unwrap();

    let output = failing_key_command(dir.path(), &["rotate", "ghost", "-n", "acme"], None);

    let stderr = stderr_of(&output);
    assert!(
        output.stdout.is_empty(),
        "a key was printed for a missing ApiKey"
    );
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(stderr.contains("\"acme\""), "{stderr}");
}

#[test]
fn rotate_with_grace_keeps_previous_hash() {
    let dir = tempfile::tempdir().unwrap();
    let first = printed_key(&key_command(dir.path(), &["create", "partner"]));

    let second = printed_key(&key_command(
        dir.path(),
        &["rotate", "partner", "--grace", "1h"],
    ));

    let stored = read_key(dir.path(), "partner");
    assert_eq!(stored.spec.key_hash, spec_hash(&second));
    assert_eq!(stored.spec.previous_key_hashes.len(), 1);
    assert_eq!(stored.spec.previous_key_hashes[0].hash, spec_hash(&first));
    let text = all_files(dir.path());
    assert!(!text.contains(&first), "a file contains the first key");
    assert!(!text.contains(&second), "a file contains the second key");
}

#[test]
fn edits_keep_other_documents() {
    let dir = tempfile::tempdir().unwrap();
    write_route(dir.path(), "partner", 8080);
    let key = printed_key(&key_command(dir.path(), &["create", "partner"]));
    let created = fs::read_to_string(dir.path().join("apikey-partner.yaml")).unwrap();
    let combined = format!(
        "# Routes and keys.\n{}---\n{created}",
        fs::read_to_string(dir.path().join("route.yaml")).unwrap()
    );
    fs::remove_file(dir.path().join("apikey-partner.yaml")).unwrap();
    fs::write(dir.path().join("route.yaml"), &combined).unwrap();
    let route_part = &combined[..combined.rfind("---\n").unwrap()];

    key_command(dir.path(), &["revoke", "partner"]);

    let edited = fs::read_to_string(dir.path().join("route.yaml")).unwrap();
    assert!(
        edited.starts_with(route_part),
        "other documents changed:\n{edited}"
    );
    assert!(edited.contains("active: false"), "{edited}");
    assert!(!read_key(dir.path(), "partner").spec.active);
    assert_eq!(
        read_key(dir.path(), "partner").spec.key_hash,
        spec_hash(&key)
    );
}

#[test]
fn list_shows_routes_and_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    write_route(dir.path(), "partner", 8080);
    let key = printed_key(&key_command(dir.path(), &["create", "partner"]));
    key_command(dir.path(), &["create", "unused"]);

    let json: serde_json::Value =
        serde_json::from_str(&key_command(dir.path(), &["list", "-o", "json"])).unwrap();
    let table = key_command(dir.path(), &["list"]);
    let yaml = key_command(dir.path(), &["list", "-o", "yaml"]);

    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["name"], "partner");
    assert_eq!(
        json[0]["fingerprint"],
        KeyHash::of_key(key.as_bytes()).fingerprint()
    );
    assert_eq!(json[0]["routes"], serde_json::json!(["hello"]));
    assert_eq!(json[1]["routes"], serde_json::json!([]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("hello"), "{table}");
    assert!(yaml.contains("name: partner"), "{yaml}");
    for output in [json.to_string(), table, yaml] {
        assert!(!output.contains(&key), "list output contains the key");
    }
}

#[test]
fn kubectl_plugin_name_behaves_the_same() {
    let bin_dir = tempfile::tempdir().unwrap();
    let plugin = bin_dir.path().join("kubectl-portcullis");
    std::os::unix::fs::symlink(BINARY, &plugin).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().to_str().unwrap();

    let created = Command::new(&plugin)
        .args(["key", "create", "partner", "--config", config])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr_of(&created));
    let key = printed_key(&stdout_of(&created));
    assert_eq!(
        read_key(dir.path(), "partner").spec.key_hash,
        spec_hash(&key)
    );

    let help = Command::new(&plugin)
        .args(["key", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{}", stderr_of(&help));
    assert!(stdout_of(&help).contains("rotate"));

    // Through kubectl's plugin lookup, when kubectl is installed.
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let through_kubectl = Command::new("kubectl")
        .args([
            "portcullis",
            "key",
            "list",
            "-o",
            "json",
            "--config",
            config,
        ])
        .env("PATH", path)
        .output();
    match through_kubectl {
        Ok(output) => {
            assert!(output.status.success(), "{}", stderr_of(&output));
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(json[0]["name"], "partner");
        }
        Err(error) => println!("kubectl not runnable ({error}); checked the symlink only"),
    }
}
