//! `eventFormat: simple` through the real binary and the demo function, and
//! bearer sessions from a session file.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct DemoFunction(Child);

impl Drop for DemoFunction {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn demo_function() -> (DemoFunction, std::net::SocketAddr) {
    let port = free_port();
    let child = Command::new(BINARY)
        .args([
            "demo-function",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "events",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(address).await.is_ok()
    })
    .await;
    assert!(up, "demo function did not start");
    (DemoFunction(child), address)
}

#[tokio::test]
async fn simple_event_round_trip() {
    let (_function, address) = demo_function().await;
    let dir = tempfile::tempdir().unwrap();
    let key = "event-key-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml(
                "customer",
                "GET",
                "/customers/:customerId",
                "events",
                "  eventFormat: simple\n",
            ),
            key_yaml("partner", key, ""),
            slice_yaml("events", &[address]),
        ]
        .concat(),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;

    let response = client()
        .get(served.url("/gw/acme/customers/c%2042?tag=a&tag=b"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-demo-function"], "events");
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["format"], "simple");
    assert_eq!(echo["path"], "/customers/c%2042");
    assert_eq!(echo["pathParameters"]["customerId"], "c 42");
    assert_eq!(echo["query"]["tag"], serde_json::json!(["a", "b"]));
    assert_eq!(
        echo["principal"],
        serde_json::json!({"type": "api-key", "apiKeyId": "partner"})
    );
    assert_eq!(echo["tenant"], "acme");
    assert_eq!(echo["route"], "customer");
}

#[tokio::test]
async fn malformed_function_answer_is_502() {
    let upstream = Upstream::start_with(Duration::ZERO, |_| {
        Some((200, "{\"statusCode\": \"nope\"}".into()))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml(
                "bad",
                "POST",
                "/bad",
                "fn",
                "  authType: none\n  eventFormat: simple\n",
            ),
            slice_yaml("fn", &[upstream.address]),
        ]
        .concat(),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;

    let response = client()
        .post(served.url("/gw/acme/bad"))
        .body(vec![0xffu8, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let event: serde_json::Value = serde_json::from_slice(&upstream.last().body).unwrap();
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "/wA=");
    assert_eq!(event["httpMethod"], "POST");
}

#[tokio::test]
async fn bearer_sessions_from_file() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml("console", "GET", "/console", "fn", "  authType: bearer\n"),
            route_yaml("open", "GET", "/open", "fn", ""),
            slice_yaml("fn", &[upstream.address]),
        ]
        .concat(),
    )
    .unwrap();
    let sessions = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        sessions.path(),
        format!(
            "# user sessions\n{} alice acme\n{} bob beta\n",
            sha256_spec("alice-token"),
            sha256_spec("bob-token")
        ),
    )
    .unwrap();
    let served = Served::start(
        dir.path(),
        &["--session-tokens", sessions.path().to_str().unwrap()],
    )
    .await;
    let client = client();
    let get = |path: &'static str, token: &'static str| {
        let request = client.get(served.url(path));
        if token.is_empty() {
            request
        } else {
            request.bearer_auth(token)
        }
    };

    assert_eq!(
        get("/gw/acme/console", "alice-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let seen = upstream.last();
    assert_eq!(seen.headers["x-portcullis-principal"], "user:alice");
    assert!(
        !seen.headers.contains_key("authorization"),
        "the consumed token reached the function"
    );
    assert_eq!(
        get("/gw/acme/console", "bob-token")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get("/gw/acme/console", "unknown")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/gw/acme/open", "alice-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn bearer_without_session_file_is_503() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml("console", "GET", "/console", "fn", "  authType: bearer\n"),
            slice_yaml("fn", &[upstream.address]),
        ]
        .concat(),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;
    let response = client()
        .get(served.url("/gw/acme/console"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.count(), 0);
}
