//! laravel-echo in Node, configured as for Laravel Reverb, receives the dismissal of a real
//! emulated call from the coordinator (tests/js/echo-dismissal.mjs; `npm ci` in tests/js
//! installs the pinned clients, ./scripts/test does it).

mod common;

use common::*;
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

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laravel_echo_configured_as_for_reverb_receives_the_dismissal_of_a_real_call() {
    let dir = js_dir();
    let h = Harness::start(Options {
        realtime: true,
        ..Options::default()
    })
    .await;
    let user = h.user(&["android", "web"], false, false).await;
    let stranger = h.user(&["web"], false, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);

    let mut child = Command::new("node")
        .arg("echo-dismissal.mjs")
        .current_dir(&dir)
        .env("RM_WS_HOST", "127.0.0.1")
        .env("RM_WS_PORT", h.addr.port().to_string())
        .env("RM_KEY", PUSHER_KEY)
        .env("RM_APP_ID", PUSHER_APP_ID)
        .env("RM_SECRET", PUSHER_SECRET)
        .env("RM_TOKEN", &web.token)
        .env("RM_USER_ID", &user.id)
        .env("RM_FOREIGN_USER_ID", &stranger.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}); install Node.js 18+ to run the JS client tests")
        });
    let mut stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut steps: Vec<Value> = Vec::new();
    let mut call = None;
    let run = tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let s: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| json!({"step": "log", "line": line}));
            if s["step"] == "subscribed" {
                // Echo is listening: a call comes in and the phone answers it.
                let (id, _) = h.call(&user);
                let legs = h.ringing(&id, &user).await;
                h.emulator.answer(&legs[0]).unwrap();
                call = Some(id);
            }
            steps.push(s);
        }
        child.wait().await.unwrap()
    })
    .await;
    let mut err_text = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err_text)).await;
    let status = run.unwrap_or_else(|_| {
        panic!("the Echo script did not finish; steps {steps:?}; stderr {err_text}")
    });
    assert!(
        status.success(),
        "the Echo script failed ({status}); steps {steps:?}; stderr {err_text}"
    );

    let call = call.expect("the script subscribed");
    let incoming = &step(&steps, "incoming_call")["data"];
    assert_eq!(incoming["call_session_id"], call.as_str());
    let ended = &step(&steps, "call_ended")["data"];
    assert_eq!(ended["call_session_id"], call.as_str());
    assert_eq!(ended["reason"], "answered_elsewhere");
    assert_eq!(ended["device_id"], phone.id.as_str());
    assert_eq!(step(&steps, "foreign_rejected")["status"], 403);
    step(&steps, "done");
}
