//! Seeds that once broke an invariant, kept so the bug stays fixed.

use ringmaster_sim::runner::{random_plan, run_seed};
use ringmaster_sim::FaultMix;

/// Seed 380 (default mix): device 0 declines while device 1 had ignored the call. The agent
/// used to send SIP 486 as well as the HTTP decline; the reject reached the backend first,
/// counted as "leg left the race", and with no device left the call became a missed call while
/// the declining device showed it declined. The agent now declines through the backend only.
#[test]
fn seed_380_decline_racing_its_own_sip_reject() {
    let mix = FaultMix::default_mix();
    let plan = random_plan(380, &mix);
    // Guard: the seed still draws the racing plan.
    assert!(plan.devices[0].decline_at.is_some(), "{plan:?}");
    assert!(plan.devices[1].ignore_at.is_some(), "{plan:?}");
    let outcome = run_seed(380, &mix);
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
}

/// Seed 41660 (`harsh,node_crash=0.6,app_kill=0.4`): the app is killed before the INVITE
/// arrives, restarts, rings from the VoIP push, and the user answers from CallKit (the SDK has
/// no leg), holds and hangs up. Hanging up used to stop the status poll and wait in
/// DISCONNECTING for a SIP confirmation that could never come; the device stayed there forever.
/// It now keeps polling until the backend says the call is over.
#[test]
fn seed_41660_hangup_of_an_answer_the_sdk_never_had() {
    let mix = FaultMix::parse("harsh,node_crash=0.6,app_kill=0.4").unwrap();
    let plan = random_plan(41660, &mix);
    assert!(plan.devices[0].answer_at.is_some() && plan.devices[0].faults.kill_at.is_some());
    let outcome = run_seed(41660, &mix);
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
}
