"""The device agent through the Python bindings, driven as an app would drive it."""

import pathlib
import re
import signal
import subprocess
import sys

import pytest

import ringmaster_ffi as rm

CALL = "v3:call-7"
ME = "android-me"
OTHER = "ios-other"


def agent(platform=rm.Platform.ANDROID):
    return rm.DeviceAgent(ME, platform, rm.default_agent_config())


def incoming(via, sent_at=0):
    return rm.Input.INCOMING_CALL(call_session_id=CALL, _from="+15551234567", sent_at=sent_at, via=via)


def poll(status, reason=None, device_id=None):
    return rm.Input.POLL_RESULT(
        call_session_id=CALL,
        status=rm.DeviceCallStatus(status=status, device_id=device_id, reason=reason, version=3),
    )


def of(effects, kind):
    return [e for e in effects if getattr(e, f"is_{kind}")()]


RINGING_APP = """
import os, signal, sys
import ringmaster_ffi as rm

app = rm.DeviceAgent(sys.argv[2], rm.Platform.ANDROID, rm.default_agent_config())
push = rm.Input.INCOMING_CALL(
    call_session_id=sys.argv[3], _from="+15551234567", sent_at=0, via=rm.Delivery.PUSH(voip=False)
)
effects = app.handle(push, 1_000)
# Persist comes first, so the snapshot is on disk before the ringer starts.
assert effects[0].is_PERSIST() and any(e.is_START_RINGING() for e in effects)
with open(sys.argv[1], "wb") as f:  # what SharedPreferences.commit() would keep
    f.write(effects[0][0])
os.kill(os.getpid(), signal.SIGKILL)  # the OS kills the app while the phone rings
"""


def test_t2_killed_while_ringing_then_backend_says_missed_shows_the_missed_call_once(tmp_path):
    stored_at = tmp_path / "agent-snapshot"
    killed = subprocess.run([sys.executable, "-c", RINGING_APP, str(stored_at), ME, CALL], check=False)
    assert killed.returncode == -signal.SIGKILL
    stored = stored_at.read_bytes()

    # The app starts again with nothing but the stored bytes.
    restored = rm.restore_agent(ME, rm.Platform.ANDROID, rm.default_agent_config(), stored, 5_000)
    app = restored.agent
    assert of(restored.effects, "START_STATUS_POLL"), "the recovered call is polled"
    assert not of(restored.effects, "START_RINGING"), "a recovered call does not ring again"
    assert not app.is_ringing(CALL)
    assert app.call_state(CALL) == rm.CallState.RINGING_INBOUND

    # The backend says the caller gave up: on the poll, then again on the push and WebSocket.
    seen = []
    seen += app.handle(poll(rm.DeviceStatus.MISSED, rm.DismissReason.TIMEOUT()), 8_000)
    seen += app.handle(
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=rm.DismissReason.TIMEOUT(), via=rm.Delivery.PUSH(voip=False)),
        8_100,
    )
    seen += app.handle(
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=rm.DismissReason.TIMEOUT(), via=rm.Delivery.WEB_SOCKET()),
        8_200,
    )
    missed = of(seen, "SHOW_MISSED_CALL")
    assert len(missed) == 1
    assert missed[0]._from == "+15551234567"
    assert app.call_state(CALL) == rm.CallState.MISSED
    assert len(of(seen, "STOP_STATUS_POLL")) == 1
    reports = [e[0] for e in of(seen, "REPORT_TRANSITION")]
    assert [(r._from, r.to) for r in reports] == [(rm.CallState.RINGING_INBOUND, rm.CallState.MISSED)]
    assert reports[0].seq == 2, "the sequence survived the restart"


def test_the_same_dismissal_over_sip_websocket_push_and_poll_stops_the_ringer_once():
    app = agent()
    app.handle(incoming(rm.Delivery.WEB_SOCKET()), 0)
    answered = rm.DismissReason.ANSWERED_ELSEWHERE(device_id=OTHER)
    inputs = [
        rm.Input.SDK(
            call_session_id=CALL,
            direction=rm.Direction.INBOUND,
            state=rm.SdkState.ANDROID(rm.AndroidState.DONE),
            cause=rm.TerminationCause(cause="LOSE_RACE", cause_code=None, sip_code=None, sip_reason=None),
        ),
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=answered, via=rm.Delivery.WEB_SOCKET()),
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=answered, via=rm.Delivery.PUSH(voip=False)),
        poll(rm.DeviceStatus.ANSWERED_ELSEWHERE, answered, OTHER),
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=answered, via=rm.Delivery.WEB_SOCKET()),
    ]
    seen = []
    for i, one in enumerate(inputs):
        seen += app.handle(one, 500 + i)
    stops = of(seen, "STOP_RINGING")
    assert len(stops) == 1
    assert stops[0].channel == rm.Channel.SIP, "SIP got there first"
    assert not app.is_ringing(CALL)
    assert app.call_state(CALL) == rm.CallState.ENDED
    assert not of(seen, "SHOW_MISSED_CALL"), "answered elsewhere is not a missed call"
    assert len(of(seen, "CLEAR_PERSISTED")) == 1


def test_an_illegal_transition_is_a_typed_error_and_changes_nothing():
    app = agent()
    app.handle(incoming(rm.Delivery.WEB_SOCKET()), 0)
    before = app.snapshot()
    with pytest.raises(rm.AgentError.Refused) as refused:
        app.handle(rm.Input.APP(call_session_id=CALL, action=rm.AppAction.HOLD), 10)
    refusal = refused.value.refusal
    assert refusal.is_ILLEGAL()
    assert refusal.state == rm.CallState.RINGING_INBOUND
    assert refusal.trigger.is_HOLD()
    assert app.snapshot() == before
    assert app.is_ringing(CALL)

    # The bare machine refuses the same way (spec T13: ON_HOLD -> RINGING_INBOUND).
    call = rm.CallMachine(rm.Direction.INBOUND, 0)
    for trigger in (rm.Trigger.INCOMING_CALL(), rm.Trigger.LOCAL_ANSWER(), rm.Trigger.HOLD()):
        call.apply(trigger, 1)
    with pytest.raises(rm.MachineError.Refused):
        call.apply(rm.Trigger.INCOMING_CALL(), 2)
    assert call.state() == rm.CallState.ON_HOLD


def test_wrong_platform_and_bad_snapshots_are_typed_errors():
    app = agent()
    with pytest.raises(rm.AgentError.WrongPlatform):
        app.handle(
            rm.Input.SDK(
                call_session_id=CALL,
                direction=rm.Direction.INBOUND,
                state=rm.SdkState.IOS(rm.IosState.RINGING),
                cause=None,
            ),
            0,
        )
    with pytest.raises(rm.SnapshotError.Malformed):
        rm.restore_agent(ME, rm.Platform.ANDROID, rm.default_agent_config(), b"not json", 0)
    stranger = rm.DeviceAgent("someone-else", rm.Platform.ANDROID, rm.default_agent_config()).snapshot()
    with pytest.raises(rm.SnapshotError.WrongDevice):
        rm.restore_agent(ME, rm.Platform.ANDROID, rm.default_agent_config(), stranger, 0)


def test_a_panic_inside_the_core_is_an_error_and_the_agent_carries_on():
    app = agent()
    before = app.snapshot()
    app.panic_on_next_input("deliberate test panic")
    with pytest.raises(rm.AgentError.Panic) as panicked:
        app.handle(incoming(rm.Delivery.WEB_SOCKET()), 0)
    assert "deliberate test panic" in panicked.value.detail
    assert app.snapshot() == before, "the half-handled input left no trace"
    assert app.call_state(CALL) is None
    effects = app.handle(incoming(rm.Delivery.WEB_SOCKET()), 1)
    assert len(of(effects, "START_RINGING")) == 1


def test_a_late_voip_push_is_reported_then_ended_on_ios():
    app = agent(rm.Platform.IOS)
    app.handle(
        rm.Input.CALL_ENDED(call_session_id=CALL, reason=rm.DismissReason.CALLER_CANCELLED(), via=rm.Delivery.WEB_SOCKET()),
        0,
    )
    effects = app.handle(incoming(rm.Delivery.PUSH(voip=True)), 100)
    assert [e.is_REPORT_THEN_END() for e in effects] == [True]
    assert effects[0].reason.is_CALLER_CANCELLED()


def test_the_sdk_maps_and_table_are_the_cores():
    assert rm.parse_sdk_state(rm.Platform.IOS, "DONE(reason: nil)") == rm.SdkState.IOS(rm.IosState.DONE)
    move = rm.map_sdk_state(
        rm.SdkState.WEB(rm.WebState.RINGING), rm.Direction.OUTBOUND, rm.CallState.REQUESTING, None
    )
    assert move.is_MOVE() and move.to == rm.CallState.RINGING_OUTBOUND
    with pytest.raises(rm.MachineError.UnknownName):
        rm.parse_sdk_state(rm.Platform.ANDROID, "teleporting")
    rows = rm.transitions()
    assert all(rm.is_legal(r._from, r.to) for r in rows)
    assert {rm.call_state_name(s) for s in rm.call_states()} >= {"RINGING_INBOUND", "REMOTE_HOLD"}


def test_the_platform_guide_names_every_agent_input_and_app_action():
    guide = (pathlib.Path(__file__).resolve().parents[4] / "docs" / "platforms.md").read_text()
    inputs = [name for name in vars(rm.Input) if re.fullmatch(r"[A-Z][A-Z_]*", name)]
    assert len(inputs) >= 6
    for name in inputs:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert f"`{camel} {{" in guide or f"`{camel}`" in guide, f"docs/platforms.md never names input {camel}"
    for action in rm.AppAction:
        camel = "".join(part.capitalize() for part in action.name.split("_"))
        assert camel in guide, f"docs/platforms.md never names app action {camel}"
