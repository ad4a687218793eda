//! `ringmaster bench ingest --quick` runs end to end (a smoke test: figures are not asserted).

use std::process::Command;

#[test]
fn bench_ingest_quick_reports_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["bench", "ingest", "--quick", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run ringmaster bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
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
