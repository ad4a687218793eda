//! The simulator dispatches through the production dispatcher (`StepDispatcher`,
//! `EffectRunner`): rows a crashed node claimed go out again from another node once the lease
//! runs out, with the same `command_id`; Telnyx API failures are retried or given up by the
//! dispatcher's rules; and every outbox row ends through the dispatcher, not the world.

use ringmaster_core::Platform;
use ringmaster_sim::faults::Latency;
use ringmaster_sim::plan::NodeCrash;
use ringmaster_sim::runner::random_plan;
use ringmaster_sim::{run_batch, DevicePlan, FaultMix, Plan, World};
use ringmaster_store::Store;
use std::collections::{BTreeMap, BTreeSet};

/// Commands each node sent, by `command_id`, read from the trace (`nodeN sends command ID`).
fn senders(world: &World) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in world.trace() {
        let Some((_, rest)) = line.split_once("] ") else {
            continue;
        };
        if let Some((node, id)) = rest.split_once(" sends command ") {
            by_id
                .entry(id.to_owned())
                .or_default()
                .insert(node.to_owned());
        }
    }
    by_id
}

#[test]
fn a_crashed_nodes_claimed_effects_go_out_from_another_node_after_the_lease() {
    let answering = DevicePlan {
        answer_at: Some(9_000),
        ..DevicePlan::idle(Platform::Ios)
    };
    let mut plan = Plan::quiet(
        3,
        vec![answering, DevicePlan::idle(Platform::Android)],
        60_000,
    );
    // The node that creates the session crashes right after that commit, having sent three of
    // its effects (both dials among them: setup is claimed before notifications) and recorded
    // none; it stays down well past the lease, so only the other node can take its rows.
    plan.node_crash = Some(NodeCrash {
        after_commit: 1,
        sent_before_crash: 3,
    });
    plan.latencies.node_down = Latency::new(20_000, 20_000);
    let world = World::new(plan).run();
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    assert_eq!(world.obs.node_crashes, 1);
    // The dials went out twice under the same command_id; Telnyx executed each once.
    let telnyx = &world.telnyx;
    assert!(
        telnyx.commands_received > telnyx.commands_executed,
        "{} received, {} executed",
        telnyx.commands_received,
        telnyx.commands_executed
    );
    let twice: Vec<_> = senders(&world)
        .into_iter()
        .filter(|(_, nodes)| nodes.len() == 2)
        .collect();
    assert!(
        !twice.is_empty(),
        "no command was sent by both nodes:\n{}",
        world.trace().join("\n")
    );
    assert!(world
        .trace()
        .iter()
        .any(|l| l.contains("repeated command") && l.contains("answered, not executed")));
    // The call still works: the answering device got the call, the other one was dismissed.
    assert!(world.devices[0].answered_locally());
    assert!(
        world.devices[1].stops.iter().any(|(_, _, ch)| ch.is_some()),
        "{:?}",
        world.devices[1].stops
    );
    let pending = futures::executor::block_on(world.store.pending_effects(1_000)).unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn telnyx_api_failures_are_retried_and_given_up_by_the_dispatcher() {
    let mix = FaultMix::parse("harsh,api_error=0.3").unwrap();
    let batch = run_batch(7_000, 200, &mix, 2, |_, _| {});
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
    assert!(batch.dispatch_retries > 0, "no retries");
    assert!(batch.commands_given_up > 0, "no give-ups");
}

#[test]
fn every_outbox_row_ends_through_the_dispatcher() {
    // Crashes in every run: rows sent and not recorded, rows claimed by a dead node.
    let mix = FaultMix::parse("harsh,node_crash=1,api_error=0.2").unwrap();
    for seed in 100..160 {
        let world = World::new(random_plan(seed, &mix)).run();
        let pending = futures::executor::block_on(world.store.pending_effects(1_000)).unwrap();
        assert!(pending.is_empty(), "seed {seed}: {pending:?}");
        let obs = &world.obs;
        assert!(obs.outbox_rows > 0, "seed {seed}");
        // Each row recorded exactly once, by the dispatcher: the world marks none itself.
        assert_eq!(
            obs.effects_done + obs.effects_abandoned,
            obs.outbox_rows,
            "seed {seed}"
        );
    }
}
