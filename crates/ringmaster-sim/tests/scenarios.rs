//! The spec's test plan T1–T15 (§11), each as a named simulation test. The scenario bodies and
//! their documentation live in `ringmaster_sim::scenarios`; `ringmaster simulate` runs the same
//! functions.

use ringmaster_sim::glare::*;
use ringmaster_sim::scenarios::*;

macro_rules! scenario {
    ($name:ident, $f:ident) => {
        #[test]
        fn $name() {
            if let Err(why) = $f() {
                panic!("{}: {why}", stringify!($name));
            }
        }
    };
}

scenario!(
    t1_orphan_detected_after_app_crash_during_active_call,
    t1_orphan_after_crash_during_active_call
);
scenario!(
    t2_missed_call_detected_after_crash_while_ringing,
    t2_missed_call_after_crash_while_ringing
);
scenario!(
    t3_no_orphan_for_connecting_call,
    t3_connecting_call_is_not_an_orphan
);
scenario!(t4_orphan_detected_after_reboot, t4_orphan_after_reboot);
scenario!(
    t5_answer_on_android_dismisses_ios_and_web_within_1s,
    t5_three_devices_dismissed_within_a_second
);
scenario!(
    t6_dozing_android_dismissed_by_sip_or_polling_within_3s,
    t6_dozing_phone_dismissed_by_sip_then_by_polling
);
scenario!(t7_web_shows_in_call_native_badge, t7_web_shows_native_call);
scenario!(
    t8_outbound_refused_while_user_on_call,
    t8_second_call_refused_while_on_a_call
);
scenario!(
    t9_sip_blocked_dismissed_via_push_or_poll,
    t9_sip_blocked_dismissed_by_push_or_poll
);
scenario!(
    t10_push_blocked_dismissed_via_sip,
    t10_push_blocked_dismissed_by_sip
);
scenario!(
    t11_backgrounded_dismissed_via_sip_or_poll,
    t11_backgrounded_dismissed_without_websocket
);
scenario!(
    t12_all_channels_fail_dismissed_via_poll_within_3s,
    t12_all_channels_fail_poll_dismisses
);
scenario!(t13_held_to_ringing_rejected, t13_held_call_cannot_ring);
scenario!(
    t14_late_reconnecting_on_done_call_ignored,
    t14_late_sip_on_ended_call_is_ignored
);
scenario!(
    t15_two_answers_10ms_apart_bridge_exactly_once,
    t15_two_answers_10ms_apart_bridge_once
);
scenario!(
    g14_remote_hold_reaches_the_backend_and_the_web,
    g14_remote_hold_reaches_every_device
);
scenario!(
    g5a_click_to_call_to_a_ringing_caller_answers_it_without_dialling,
    g5a_call_back_answers_the_ringing_call
);
scenario!(
    g5b_users_calling_each_other_keep_the_lower_call_id,
    g5b_crossing_calls_keep_the_lower_id
);
scenario!(
    a_second_call_answered_while_the_user_is_on_a_call_is_turned_away_busy_as_on_the_server,
    busy_answer_while_on_another_call_is_turned_away
);

#[test]
fn every_scenario_is_listed_for_the_cli() {
    let names: Vec<&str> = all().into_iter().map(|(n, _)| n).collect();
    let mut expected: Vec<String> = (1..=15).map(|i| format!("T{i}")).collect();
    expected.extend(["G14", "G5a", "G5b"].map(str::to_owned));
    assert_eq!(names, expected);
}
