//! `ringmaster states` run as a user would run it.

use std::collections::HashSet;
use std::process::Command;

fn ringmaster(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run ringmaster")
}

#[test]
fn json_lists_every_state_every_row_and_the_sdk_maps() {
    let out = ringmaster(&["states", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let states: Vec<&str> = v["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 15);
    for name in [
        "IDLE",
        "RINGING_INBOUND",
        "REMOTE_HOLD",
        "DISCONNECTING",
        "DROPPED",
    ] {
        assert!(states.contains(&name), "{name} missing");
    }

    let rows = v["transitions"].as_array().unwrap();
    assert_eq!(rows.len(), ringmaster_core::TRANSITIONS.len());
    let pairs: HashSet<(String, String, String)> = rows
        .iter()
        .map(|r| {
            for key in ["from", "to", "trigger", "platforms", "source"] {
                assert!(!r[key].is_null(), "row without {key}: {r}");
            }
            (
                r["from"].as_str().unwrap().to_owned(),
                r["to"].as_str().unwrap().to_owned(),
                r["trigger"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // A few spec §1.3 rows and one implied row, spelled as the spec writes them.
    for (from, to, trigger) in [
        ("IDLE", "RINGING_INBOUND", "incoming_call"),
        ("RINGING_INBOUND", "MISSED", "ring_timeout"),
        ("ACTIVE", "RENEGOTIATING", "media_update_started"),
        ("DROPPED", "ENDED", "cleanup_done"),
        ("REMOTE_HOLD", "ACTIVE", "remote_resume"),
    ] {
        assert!(
            pairs.contains(&(from.into(), to.into(), trigger.into())),
            "{from} -> {to} on {trigger} missing"
        );
    }
    assert!(rows
        .iter()
        .all(|r| r["source"] == "spec" || r["why"].is_string()));

    for platform in ["ios", "android", "web"] {
        assert!(v["sdk_maps"][platform]["rules"].as_array().unwrap().len() > 10);
    }
    assert_eq!(v["sdk_maps"]["web"]["states"].as_array().unwrap().len(), 12);
}

#[test]
fn dot_and_markdown_render_the_same_table() {
    let dot = ringmaster(&["states", "--dot"]);
    assert!(dot.status.success());
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.contains("RINGING_INBOUND -> ACTIVE [label=\"local_answer\"]"));

    let md = ringmaster(&["states", "--markdown"]);
    assert!(md.status.success());
    assert_eq!(
        String::from_utf8(md.stdout).unwrap(),
        ringmaster_core::render::markdown()
    );
}

#[test]
fn a_format_flag_is_required_and_only_one() {
    assert!(!ringmaster(&["states"]).status.success());
    assert!(!ringmaster(&["states", "--json", "--dot"]).status.success());
}
