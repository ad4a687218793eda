//! Exhaustive check of the answer race with stateright, and the mutation that must fail it.

use ringmaster_sim::model::check;

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
