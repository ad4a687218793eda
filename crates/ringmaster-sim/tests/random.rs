//! Seeded random runs: every invariant holds under every fault mix, runs replay exactly, and
//! the checks do catch a system that dismisses too slowly.

use ringmaster_core::Platform;
use ringmaster_sim::plan::{DevicePlan, Plan};
use ringmaster_sim::runner::{random_plan, run_seed, ChannelStats, RunOutcome};
use ringmaster_sim::{run_batch, scenarios, FaultMix, FaultMixError, World};

fn assert_clean(mix: &str, runs: u64) {
    let mix = FaultMix::parse(mix).unwrap();
    let batch = run_batch(7_000, runs, &mix, 2, |_, _| {});
    assert_eq!(batch.runs(), runs);
    if let Some(v) = batch.violations().first() {
        panic!(
            "{} violations; first: seed {} {}: {}\n{}",
            batch.violations().len(),
            v.seed,
            v.invariant,
            v.detail,
            v.trace.join("\n")
        );
    }
}

#[test]
fn random_runs_without_faults_hold_every_invariant() {
    assert_clean("none", 150);
}

#[test]
fn random_runs_with_everyday_faults_hold_every_invariant() {
    assert_clean("default", 300);
}

#[test]
fn random_runs_on_a_bad_day_hold_every_invariant() {
    assert_clean("harsh,node_crash=0.8,app_kill=0.5", 300);
}

#[test]
fn random_runs_with_only_polling_left_hold_every_invariant() {
    let mix = FaultMix::poll_only();
    let batch = run_batch(9_000, 150, &mix, 2, |_, _| {});
    assert!(
        batch.violations().is_empty(),
        "{:?}",
        batch.violations().first()
    );
    let table = batch.latency_table();
    assert!(table["poll"].count > 0);
    for channel in ["sip", "websocket", "push"] {
        assert_eq!(
            table[channel].count, 0,
            "{channel} should never win with every channel down"
        );
    }
}

#[test]
fn a_seed_replays_exactly_and_another_seed_differs() {
    let mix = FaultMix::harsh();
    let a = World::new(random_plan(42, &mix)).run();
    let b = World::new(random_plan(42, &mix)).run();
    assert_eq!(a.trace(), b.trace());
    let c = World::new(random_plan(43, &mix)).run();
    assert_ne!(a.trace(), c.trace());
}

#[test]
fn a_device_polling_every_minute_is_caught_ringing_too_long() {
    // Every other channel down and the poll slowed to 60 s: the checks must notice.
    let mut ringing = DevicePlan::idle(Platform::Android);
    ringing.faults.sip_lost = true;
    ringing.faults.ws_down = true;
    ringing.faults.push_blocked = true;
    let answering = DevicePlan {
        answer_at: Some(5_000),
        ..DevicePlan::idle(Platform::Ios)
    };
    let mut plan = Plan::quiet(5, vec![answering, ringing], 40_000);
    plan.device_poll_ms = 60_000;
    let world = World::new(plan).run();
    let outcome = RunOutcome::of(&world);
    let v = outcome
        .violations
        .iter()
        .find(|v| v.invariant == "dismissed_in_time")
        .unwrap_or_else(|| panic!("slow dismissal not caught: {:?}", outcome.violations));
    assert_eq!(v.seed, 5);
    assert!(
        v.trace[0].contains("plan:"),
        "the trace starts with the plan to replay"
    );
    assert!(v
        .trace
        .last()
        .unwrap()
        .contains("VIOLATION dismissed_in_time"));
}

#[test]
fn fault_mixes_parse_names_and_overrides_and_refuse_garbage() {
    let mix = FaultMix::parse("harsh, node_crash=1 ,sip_lost=0").unwrap();
    assert_eq!(mix.node_crash, 1.0);
    assert_eq!(mix.sip_lost, 0.0);
    assert_eq!(mix.doze, FaultMix::harsh().doze);
    assert_eq!(FaultMix::parse("ws_down=0.5").unwrap().ws_down, 0.5);
    assert_eq!(FaultMix::parse("").unwrap(), FaultMix::none());
    assert!(matches!(
        FaultMix::parse("sunny"),
        Err(FaultMixError::UnknownMix(_))
    ));
    assert!(matches!(
        FaultMix::parse("none,meteor=0.1"),
        Err(FaultMixError::UnknownFault(_))
    ));
    assert!(matches!(
        FaultMix::parse("none,doze=2"),
        Err(FaultMixError::OutOfRange(_))
    ));
    assert!(matches!(
        FaultMix::parse("none,doze"),
        Err(FaultMixError::Syntax(_))
    ));
    assert!(matches!(
        FaultMix::parse(&"x".repeat(2_000)),
        Err(FaultMixError::TooLong)
    ));
    // A mix prints as overrides that parse back to itself.
    let text = FaultMix::default_mix().to_string();
    assert_eq!(FaultMix::parse(&text).unwrap(), FaultMix::default_mix());
}

#[test]
fn percentiles_use_nearest_rank() {
    let mut samples: Vec<u64> = (1..=100).rev().collect();
    let s = ChannelStats::of(&mut samples);
    assert_eq!(
        (s.p50, s.p95, s.p99, s.max, s.count),
        (50, 95, 99, 100, 100)
    );
    assert_eq!(ChannelStats::of(&mut []), ChannelStats::default());
}

#[test]
fn the_summary_has_the_documented_json_shape() {
    let mix = FaultMix::default_mix();
    let batch = run_batch(1, 20, &mix, 1, |_, _| {});
    let json = serde_json::to_value(batch.summary(scenarios::Verdicts(vec![
        ("T1".into(), "pass".into()),
        ("T2".into(), "fail: x".into()),
    ])))
    .unwrap();
    assert_eq!(json["runs"], 20);
    assert!(json["violations"].as_array().unwrap().is_empty());
    for channel in ["sip", "websocket", "push", "poll"] {
        for key in ["p50", "p95", "p99", "max", "count"] {
            assert!(
                json["dismissal_latency_ms"][channel][key].is_u64(),
                "{channel}.{key}"
            );
        }
    }
    assert_eq!(json["scenarios"]["T1"], "pass");
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);
}

#[test]
fn one_run_is_a_function_of_its_seed() {
    let mix = FaultMix::default_mix();
    let a = run_seed(11, &mix);
    let b = run_seed(11, &mix);
    assert_eq!(a.latencies, b.latencies);
    assert_eq!(a.cas_conflicts, b.cas_conflicts);
}
