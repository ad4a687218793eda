//! The real npm clients (pusher-js 8, laravel-echo 2) against a router on 127.0.0.1:0.
//! The scripts live in tests/js at the repository root; `npm ci` there installs them
//! (./scripts/test does it).

mod common;

use common::*;
use ringmaster_realtime::ChannelName;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    assert!(
        dir.join("node_modules/pusher-js").is_dir()
            && dir.join("node_modules/laravel-echo").is_dir(),
        "tests/js/node_modules is missing: run `npm ci` in {} (./scripts/test does this)",
        dir.display()
    );
    dir
}

/// Runs one client script; `on_step` answers the steps it prints. Returns every step.
async fn run_script(
    server: &Server,
    script: &str,
    extra_env: &[(&str, &str)],
    mut on_step: impl AsyncFnMut(&Value),
) -> Vec<Value> {
    let dir = js_dir();
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(&dir)
        .env("RM_WS_HOST", "127.0.0.1")
        .env("RM_WS_PORT", server.addr.port().to_string())
        .env("RM_KEY", KEY)
        .env("RM_APP_ID", APP_ID)
        .env("RM_SECRET", SECRET)
        .env("RM_TOKEN", "tok-alice")
        .env("RM_USER_ID", "42")
        .env("RM_FOREIGN_USER_ID", "7")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run `node` ({e}); install Node.js 18+ to run the JS client tests")
    });
    let mut stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let limit = Duration::from_secs(40);
    let outcome = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let step: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| json!({ "step": "log", "line": line }));
            on_step(&step).await;
            steps.push(step);
        }
        child.wait().await.unwrap()
    })
    .await;
    let mut err_text = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err_text)).await;
    let status = outcome
        .unwrap_or_else(|_| panic!("{script} did not finish; steps {steps:?}; stderr {err_text}"));
    assert!(
        status.success(),
        "{script} failed ({status}); steps {steps:?}; stderr {err_text}"
    );
    steps
}

fn find<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

async fn publish_call_ended(server: &Server, reason: &str) {
    let ch = ChannelName::parse("private-user.42").unwrap();
    let data = json!({ "call_session_id": "cs-1", "reason": reason, "device_id": "alice-web" });
    let delivered = server
        .hub
        .publish(&ch, "call_ended", &data, None)
        .await
        .unwrap();
    assert_eq!(delivered, 1);
}

#[tokio::test]
async fn pusher_js_authenticates_receives_is_refused_foreign_channels_and_reconnects() {
    let server = Server::start(config()).await;
    let steps = run_script(
        &server,
        "pusher_client.mjs",
        &[],
        async |step: &Value| match step["step"].as_str() {
            Some("subscribed") => publish_call_ended(&server, "answered_elsewhere").await,
            Some("ready_for_reconnect") => assert_eq!(server.hub.close_all(), 1),
            Some("resubscribed") => publish_call_ended(&server, "caller_cancelled").await,
            _ => {}
        },
    )
    .await;
    let received = find(&steps, "received");
    assert_eq!(received["event"], "call_ended");
    assert_eq!(received["data"]["reason"], "answered_elsewhere");
    assert_eq!(received["data"]["call_session_id"], "cs-1");
    assert_eq!(find(&steps, "foreign_rejected")["status"], 403);
    assert_eq!(find(&steps, "sdk_received")["data"], json!({"n": 2}));
    let again = find(&steps, "received_after_reconnect");
    assert_eq!(again["data"]["reason"], "caller_cancelled");
    assert_ne!(
        find(&steps, "subscribed")["socket_id"],
        find(&steps, "resubscribed")["socket_id"]
    );
    find(&steps, "done");
}

async fn echo_run(broadcaster: &str) {
    let server = Server::start(config()).await;
    let steps = run_script(
        &server,
        "echo_client.mjs",
        &[("RM_BROADCASTER", broadcaster)],
        async |step: &Value| {
            if step["step"] == "subscribed" {
                publish_call_ended(&server, "answered_elsewhere").await;
            }
        },
    )
    .await;
    let received = find(&steps, "received");
    assert_eq!(received["data"]["reason"], "answered_elsewhere");
    assert_eq!(received["data"]["device_id"], "alice-web");
    assert_eq!(
        find(&steps, "presence_here")["members"],
        json!([{"name": "alice"}])
    );
    assert_eq!(find(&steps, "foreign_rejected")["status"], 403);
    find(&steps, "done");
}

#[tokio::test]
async fn laravel_echo_configured_for_reverb_receives_call_ended() {
    echo_run("reverb").await;
}

#[tokio::test]
async fn laravel_echo_with_the_pusher_broadcaster_receives_call_ended() {
    echo_run("pusher").await;
}
