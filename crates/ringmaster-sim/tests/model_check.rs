//! Exhaustive check of the answer race with stateright, and the mutation that must fail it.

use ringmaster_sim::model::{check, check_with, ModelOptions};

#[test]
fn answer_race_never_bridges_twice_and_always_records_the_winner() {
    let report = check(3, 2, true).expect("model builds");
    assert!(
        report.bridge_reachable,
        "the model never bridges: {report:?}"
    );
    assert!(report.counterexamples.is_empty(), "{report:?}");
    assert!(
        report.unique_states > 100,
        "suspiciously small state space: {report:?}"
    );
    eprintln!(
        "answer race K=3, 2 crashes: {} unique states",
        report.unique_states
    );
}

#[test]
fn removing_the_compare_and_set_is_caught() {
    let report = check(2, 0, false).expect("model builds");
    assert!(
        !report.counterexamples.is_empty(),
        "the check passed without compare-and-set: {report:?}"
    );
    let (property, steps) = &report.counterexamples[0];
    eprintln!("without CAS, '{property}' fails after {steps:?}");
    // Two loads of the same version, then both commits: the second overwrites the winner.
    assert!(steps.iter().filter(|s| s.starts_with("Commit")).count() >= 2);
}

fn options(compare_and_set: bool, worker_command_ids: bool) -> ModelOptions {
    ModelOptions {
        devices: 2,
        crashes: 0,
        compare_and_set,
        worker_command_ids,
        hangup_and_failures: None,
    }
}

#[test]
fn with_per_worker_command_ids_removing_the_compare_and_set_bridges_twice() {
    // The deterministic ids let Telnyx fold the racing bridges into one: only the recorded
    // winner is wrong.
    let same_ids = check_with(options(false, false)).expect("model builds");
    assert!(!same_ids
        .counterexamples
        .iter()
        .any(|(p, _)| p == "never two bridges"));
    // Ids of each worker's own (random ids in a real driver): two devices are bridged.
    let mutant = check_with(options(false, true)).expect("model builds");
    let (_, steps) = mutant
        .counterexamples
        .iter()
        .find(|(p, _)| p == "never two bridges")
        .unwrap_or_else(|| panic!("two bridges not found: {mutant:?}"));
    eprintln!("per-worker ids without CAS: two bridges after {steps:?}");
    assert!(steps.iter().filter(|s| s.starts_with("Dispatch")).count() >= 2);
    // With the compare-and-set, even per-worker ids bridge once.
    let guarded = check_with(options(true, true)).expect("model builds");
    assert!(guarded.counterexamples.is_empty(), "{guarded:?}");
    assert!(guarded.bridge_reachable);
}

#[test]
fn caller_hangup_and_refused_bridges_keep_every_property() {
    let report = check_with(ModelOptions {
        devices: 2,
        crashes: 1,
        compare_and_set: true,
        worker_command_ids: false,
        hangup_and_failures: Some(2),
    })
    .expect("model builds");
    assert!(report.counterexamples.is_empty(), "{report:?}");
    assert!(report.bridge_reachable);
    let plain = check(2, 1, true).expect("model builds");
    assert!(
        report.unique_states > plain.unique_states,
        "hangup and failures add states: {report:?} vs {plain:?}"
    );
    eprintln!(
        "answer race K=2, 1 crash, caller hangup, 2 refused bridges: {} unique states",
        report.unique_states
    );
    // Without the compare-and-set a stale answer lands after the hangup.
    let broken = check_with(ModelOptions {
        compare_and_set: false,
        ..ModelOptions {
            devices: 2,
            crashes: 0,
            compare_and_set: true,
            worker_command_ids: false,
            hangup_and_failures: Some(0),
        }
    })
    .expect("model builds");
    assert!(
        broken
            .counterexamples
            .iter()
            .any(|(p, _)| p == "nothing bridged after the caller left"),
        "{broken:?}"
    );
}
