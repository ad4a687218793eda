//! `ringmaster serve` as an operator runs it: configuration errors and JSON logs.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ringmaster() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmaster"));
    for var in [
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
        "RINGMASTER_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `serve` with a setting that cannot work; returns (exit code, stderr).
fn failing_serve(dir: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = ringmaster();
    cmd.arg("serve")
        .env(
            "RINGMASTER_DATABASE_URL",
            format!("sqlite://{}/rm.db", dir.display()),
        )
        .env("RINGMASTER_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ringmaster");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_configuration_error_is_one_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = failing_serve(dir.path(), &[("RINGMASTER_TELNYX_DIALS_PER_SEC", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ringmaster: configuration error:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("RINGMASTER_TELNYX_DIALS_PER_SEC"),
        "names the setting: {stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");

    let (code, stderr) = failing_serve(dir.path(), &[("RINGMASTER_LOG_FORMAT", "yaml")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("RINGMASTER_LOG_FORMAT"), "{stderr}");

    let (code, stderr) = failing_serve(
        dir.path(),
        &[
            ("RINGMASTER_TELNYX_DIALS_PER_SEC", "0"),
            ("RUST_BACKTRACE", "1"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("Stack backtrace"),
        "RUST_BACKTRACE asks for it: {stderr}"
    );
}

/// A `serve` child killed when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_call_spans_carry_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = ringmaster()
        .arg("serve")
        .env(
            "RINGMASTER_DATABASE_URL",
            format!("sqlite://{}/rm.db", dir.path().display()),
        )
        .env("RINGMASTER_LISTEN", "127.0.0.1:0")
        .env("RINGMASTER_ADMIN_TOKEN", "ops-admin")
        .env("RINGMASTER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,ringmaster_server=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start ringmaster serve");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let banner = lines.next().expect("banner").unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("URL in the banner")
        .to_owned();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let call = ringmaster()
        .args(["call", "--server", &url, "--admin-token", "ops-admin"])
        .args(["--answer-after-ms", "200", "--talk-secs", "0"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run ringmaster call");
    let out = String::from_utf8_lossy(&call.stdout);
    assert!(call.status.success(), "{out}");
    let call_id = out
        .split("(call ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the call id in the demo's output")
        .to_owned();

    // The dispatcher logs after the demo has seen the call end; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let device_lines = events
            .iter()
            .filter(|e| span_named(e, "call").is_some())
            .count();
        if device_lines > 3 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server);

    assert!(events.iter().all(Value::is_object));
    let in_call_spans: Vec<&Value> = events
        .iter()
        .filter_map(|e| span_named(e, "call"))
        .collect();
    assert!(
        in_call_spans.len() > 3,
        "the device API polled the call status and logged it"
    );
    for span in &in_call_spans {
        assert!(
            span["call_session_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "device-API span without call_session_id: {span}"
        );
    }
    assert!(in_call_spans
        .iter()
        .any(|s| s["call_session_id"] == call_id.as_str()));
    let webhook_spans: Vec<&Value> = events
        .iter()
        .filter_map(|e| span_named(e, "webhook"))
        .collect();
    assert!(!webhook_spans.is_empty(), "webhook handling is logged");
    assert!(webhook_spans
        .iter()
        .all(|s| s["call_session_id"] == call_id.as_str()));
}

/// The span called `name` among an event's spans.
fn span_named<'a>(event: &'a Value, name: &str) -> Option<&'a Value> {
    event["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}
