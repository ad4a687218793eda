//! `ringmaster bench ingest --quick` and `bench lifecycle --quick` run end to end (smoke tests:
//! figures are not asserted).

use std::process::Command;

/// Runs `ringmaster bench SCENARIO --quick --json`; its report.
fn quick_json(scenario: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["bench", scenario, "--quick", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run ringmaster bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[test]
fn bench_ingest_quick_reports_every_scenario() {
    let report = quick_json("ingest");
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ceiling", "new-call", "unknown-number"]);
    for s in report["scenarios"].as_array().unwrap() {
        assert!(s["acknowledged"].as_u64().unwrap() > 0, "{s}");
    }
}

/// `ringmaster bench lifecycle --quick` runs end to end: every call rings, is answered, is
/// dismissed and ends; the report has both latencies (figures are not asserted).
#[test]
fn bench_lifecycle_quick_reports_every_phase() {
    let report = quick_json("lifecycle");
    let calls = report["plan"]["calls"].as_u64().unwrap();
    assert!(calls > 0, "{report}");
    for phase in ["ringing", "answered", "dismissed", "ended"] {
        assert_eq!(report[phase].as_u64(), Some(calls), "{phase}: {report}");
    }
    assert_eq!(
        report["commit"]["samples"], report["plan"]["commits"],
        "{report}"
    );
    for measure in ["commit", "dismissal"] {
        let m = &report[measure];
        assert!(m["p50_ms"].as_f64().unwrap() > 0.0, "{measure}: {report}");
        assert!(
            m["p99_ms"].as_f64().unwrap() >= m["p50_ms"].as_f64().unwrap(),
            "{measure}: {report}"
        );
    }
    assert!(report["p99_ratio"].as_f64().unwrap() > 0.0, "{report}");
}

/// `ringmaster bench lifecycle --push-outage`: with the push provider hanging or answering 503
/// for the whole run, every call's Telnyx commands (bridge, hangups) still go out and every
/// call is dismissed over the WebSocket; the report compares each provider with the healthy
/// run (figures are not asserted).
#[test]
fn bench_lifecycle_push_outage_still_sends_every_telnyx_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["bench", "lifecycle", "--quick", "--push-outage", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run ringmaster bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let runs = report["runs"].as_array().expect("runs");
    let providers: Vec<&str> = runs
        .iter()
        .map(|r| r["report"]["plan"]["push"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["healthy", "hanging", "unavailable"], "{report}");
    for run in runs {
        let r = &run["report"];
        let calls = r["plan"]["calls"].as_u64().unwrap();
        assert_eq!(r["commands"]["samples"].as_u64(), Some(calls), "{r}");
        assert_eq!(r["dismissed"].as_u64(), Some(calls), "{r}");
        assert_eq!(r["ended"].as_u64(), Some(calls), "{r}");
    }
    assert_eq!(runs[0]["p99_excess_ms"].as_f64(), Some(0.0), "{report}");
    assert!(report["worst_excess_ms"].as_f64().is_some(), "{report}");
    assert_eq!(report["budget_ms"].as_f64(), Some(100.0), "{report}");
}

/// `ringmaster bench fanout` against its own `serve` child: every socket gets every event,
/// whether publishes go out on schedule or each waits for its answer (figures not asserted).
#[test]
fn bench_fanout_delivers_every_event_to_every_socket() {
    for extra in [None, Some("--await-each-publish")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmaster"));
        cmd.args(["bench", "fanout", "--sockets", "20", "--events", "5"])
            .args(["--rate", "50", "--json"])
            .args(extra)
            .env("RUST_LOG", "error");
        let out = cmd.output().expect("run ringmaster bench fanout");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["expected"].as_u64(), Some(100), "{report}");
        assert_eq!(report["delivered"], report["expected"], "{report}");
        if cfg!(target_os = "linux") {
            assert!(report["server_cpu_secs"].as_f64().is_some(), "{report}");
        }
    }
}
