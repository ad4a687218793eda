//! Glare (issue 14, point 5) as scenarios: sessions driven by their inputs, each device by its
//! agent, the sessions' WebSocket and push notifications delivered to the agents.
//!
//! - G5a: a user's click-to-call to the number whose call to them is ringing answers that call
//!   on the calling device and dials nothing new.
//! - G5b: two users of one deployment call each other at once; the lower `call_session_id`
//!   survives and the other call ends on every device with reason `replaced`.

use crate::scenarios::{ensure, Outcome};
use ringmaster_core::session::{
    glare_loser, Action, ClientStateRef, Command, Effect as Fx, Input as SessionInput, NewInbound,
    NewOutbound, NotifyEvent, ProviderEvent, ProviderEventKind, RingTarget, Session, SessionConfig,
    SessionStatus,
};
use ringmaster_core::session::{Channel as NotifyChannel, Notification};
use ringmaster_core::{
    CallControlId, CallSessionId, CallState, DeviceId, DismissReason, Platform, TenantId,
    Timestamp, UserId,
};
use ringmaster_device::{AgentConfig, AppAction, Delivery, DeviceAgent, Input};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn target(device: &DeviceId, platform: Platform) -> RingTarget {
    RingTarget {
        device_id: device.clone(),
        sip_uri: format!("sip:{device}@sip.telnyx.com"),
        platform: platform.as_str().to_owned(),
    }
}

/// One device: its user and its agent.
struct Phone {
    user: UserId,
    agent: DeviceAgent,
}

impl Phone {
    fn new(user: &str, device: &str, platform: Platform) -> Self {
        Self {
            user: UserId::new(user),
            agent: DeviceAgent::new(DeviceId::new(device), platform, AgentConfig::default()),
        }
    }

    fn id(&self) -> &DeviceId {
        self.agent.device_id()
    }

    fn target(&self) -> RingTarget {
        target(self.id(), self.agent.platform())
    }

    fn input(&mut self, input: Input, t: u64) -> Result<(), String> {
        self.agent
            .handle(input, at(t))
            .map(drop)
            .map_err(|e| format!("{}: {e}", self.id()))
    }
}

/// Runs one input on a session; its dismissals and state changes reach the user's agents (the
/// WebSocket reaches every device of the user, a push only its device).
fn run(
    session: &mut Session,
    input: SessionInput,
    t: u64,
    phones: &mut [Phone],
) -> Result<Vec<Fx>, String> {
    let fx = session
        .handle(input, at(t))
        .map_err(|e| format!("{}: {e}", session.id()))?;
    for e in &fx {
        let Fx::Notify(n) = e else { continue };
        deliver(n, t, phones)?;
    }
    Ok(fx)
}

fn deliver(n: &Notification, t: u64, phones: &mut [Phone]) -> Result<(), String> {
    for phone in phones.iter_mut().filter(|p| p.user == n.user) {
        let via = match &n.channel {
            NotifyChannel::WebSocket => Delivery::WebSocket,
            NotifyChannel::Push { device, .. } if device == phone.id() => {
                Delivery::Push { voip: false }
            }
            NotifyChannel::Push { .. } => continue,
        };
        let input = match &n.event {
            NotifyEvent::CallEnded { reason, .. } => Input::CallEnded {
                call_session_id: n.call_session_id.clone(),
                reason: reason.clone(),
                via,
            },
            NotifyEvent::CallStateChanged { device, state, .. } if via == Delivery::WebSocket => {
                Input::CallStateChanged {
                    call_session_id: n.call_session_id.clone(),
                    device: device.clone(),
                    state: *state,
                }
            }
            _ => continue,
        };
        phone.input(input, t)?;
    }
    Ok(())
}

/// The dials among `fx`: command id, the device rung (if any) and the leg's `client_state`.
fn dials(fx: &[Fx]) -> Vec<(String, Option<DeviceId>, ClientStateRef)> {
    fx.iter()
        .filter_map(|e| match e {
            Fx::Telnyx(Command {
                command_id,
                action:
                    Action::Dial {
                        device,
                        client_state,
                        ..
                    },
                ..
            }) => Some((command_id.clone(), device.clone(), client_state.clone())),
            _ => None,
        })
        .collect()
}

fn leg_of(device: &DeviceId) -> CallControlId {
    CallControlId::new(format!("leg-{device}"))
}

/// Answers the dials of `fx` with leg ids and their `call.initiated`, and offers each device
/// its leg (the SDK's INVITE with the leg's `client_state`).
fn legs_come_up(
    session: &mut Session,
    fx: &[Fx],
    t: u64,
    phones: &mut [Phone],
) -> Result<(), String> {
    for (command_id, device, client_state) in dials(fx) {
        let Some(device) = device else { continue };
        let leg = CallControlId::new(format!("{}-{}", leg_of(&device), session.id()));
        let result = SessionInput::DialResult {
            command_id,
            result: Ok(leg.clone()),
        };
        run(session, result, t, phones)?;
        let initiated = ProviderEvent::new(
            leg,
            Some(client_state.clone()),
            ProviderEventKind::Initiated,
        );
        run(session, SessionInput::Provider(initiated), t + 10, phones)?;
        let phone = phones
            .iter_mut()
            .find(|p| p.id() == &device)
            .ok_or("a leg for an unknown device")?;
        let offered = Input::LegOffered {
            call_session_id: session.id().clone(),
            client_state: Some(client_state),
        };
        phone.input(offered, t + 20)?;
    }
    Ok(())
}

fn inbound(
    id: &str,
    user: &str,
    from: &str,
    to: &str,
    devices: Vec<RingTarget>,
) -> Result<Session, String> {
    Session::new_inbound(
        NewInbound {
            id: CallSessionId::new(id),
            tenant: TenantId::new("t"),
            user: UserId::new(user),
            caller_leg: CallControlId::new(format!("caller-{id}")),
            from: from.into(),
            to: to.into(),
            devices,
            busy: false,
            config: SessionConfig::default(),
        },
        at(0),
    )
    .map_err(|e| e.to_string())
}

fn outbound(
    id: &str,
    user: &str,
    device: RingTarget,
    from: &str,
    to: &str,
) -> Result<Session, String> {
    Session::new_outbound(
        NewOutbound {
            id: CallSessionId::new(id),
            tenant: TenantId::new("t"),
            user: UserId::new(user),
            device,
            from: from.into(),
            to: to.into(),
            config: SessionConfig::default(),
        },
        at(0),
    )
    .map_err(|e| e.to_string())
}

/// G5a: a call from +15550003333 rings the user's phone and web tab; the user taps "call
/// +15550003333" on the phone. The ringing call is answered on the phone, nothing is dialled,
/// the tab is told `answered_elsewhere`.
pub fn g5a_call_back_answers_the_ringing_call() -> Outcome {
    let caller = "+15550003333";
    let mut phones = vec![
        Phone::new("u", "android-0", Platform::Android),
        Phone::new("u", "web-1", Platform::Web),
    ];
    let targets = phones.iter().map(Phone::target).collect();
    let mut session = inbound("g5a", "u", caller, "+15550004444", targets)?;
    let id = session.id().clone();
    let start = run(&mut session, SessionInput::Start, 0, &mut phones)?;
    legs_come_up(&mut session, &start, 100, &mut phones)?;
    ensure(phones.iter().all(|p| p.agent.is_ringing(&id)), || {
        "both devices should ring".into()
    })?;
    let mut dialled = dials(&start).len();

    // The click-to-call finds this call ringing from the number asked for: a call back.
    let phone = phones[0].id().clone();
    let fx = run(
        &mut session,
        SessionInput::CallBack {
            device: phone.clone(),
        },
        1_000,
        &mut phones,
    )?;
    dialled += dials(&fx).len();
    ensure(dials(&fx).is_empty(), || {
        format!("a call back dialled: {fx:?}")
    })?;
    phones[0].input(
        Input::App {
            call_session_id: id.clone(),
            action: AppAction::Answer,
        },
        1_000,
    )?;
    let answered = ProviderEvent::new(
        CallControlId::new(format!("{}-{id}", leg_of(&phone))),
        None,
        ProviderEventKind::Answered,
    );
    let fx = run(
        &mut session,
        SessionInput::Provider(answered),
        1_100,
        &mut phones,
    )?;
    dialled += dials(&fx).len();
    let caller_answer = fx
        .iter()
        .find_map(|e| match e {
            Fx::Telnyx(Command {
                command_id,
                action: Action::Answer { .. },
                ..
            }) => Some(command_id.clone()),
            _ => None,
        })
        .ok_or("the caller was not answered")?;
    let result = SessionInput::CommandResult {
        command_id: caller_answer,
        result: Ok(()),
    };
    run(&mut session, result, 1_200, &mut phones)?;
    let bridged = ProviderEvent::new(format!("caller-{id}"), None, ProviderEventKind::Bridged);
    run(
        &mut session,
        SessionInput::Provider(bridged),
        1_300,
        &mut phones,
    )?;

    ensure(dialled == 2, || {
        format!("{dialled} dials; only the two rings")
    })?;
    ensure(session.status() == SessionStatus::Bridged, || {
        format!("the call is {:?}", session.status())
    })?;
    ensure(session.answered_device() == Some(&phone), || {
        format!("answered on {:?}", session.answered_device())
    })?;
    ensure(
        phones[0].agent.call_state(&id) == Some(CallState::Active),
        || format!("phone is {:?}", phones[0].agent.call_state(&id)),
    )?;
    let web = phones[1].agent.tombstone(&id).cloned();
    let told = web.as_ref().and_then(|t| t.reason.clone());
    ensure(
        told == Some(DismissReason::AnsweredElsewhere { device_id: phone }),
        || format!("web tab ended with {web:?}"),
    )
}

/// G5b: Ada (+15550005555) and Bob (+15550006666) call each other at once by click-to-call;
/// Bob's call already rings Ada's devices. The call with the lower id survives; the other ends
/// with `replaced` on Bob's calling phone and on both of Ada's devices it rang, and only then.
pub fn g5b_crossing_calls_keep_the_lower_id() -> Outcome {
    let (ada_number, bob_number) = ("+15550005555", "+15550006666");
    let mut phones = vec![
        Phone::new("ada", "ada-ios", Platform::Ios),
        Phone::new("ada", "ada-web", Platform::Web),
        Phone::new("bob", "bob-android", Platform::Android),
    ];
    let ada_phone = phones[0].target();
    let bob_phone = phones[2].target();
    let mut x = outbound("glare-x", "ada", ada_phone, ada_number, bob_number)?;
    let mut y = outbound("glare-y", "bob", bob_phone, bob_number, ada_number)?;
    for call in [&mut x, &mut y] {
        let start = run(call, SessionInput::Start, 0, &mut phones)?;
        legs_come_up(call, &start, 100, &mut phones)?;
    }
    let (ada_call, bob_call) = (x.id().clone(), y.id().clone());
    ensure(
        phones[0].agent.call_state(&ada_call) == Some(CallState::Connecting)
            && phones[2].agent.call_state(&bob_call) == Some(CallState::Connecting),
        || "both click-to-call legs should be the users' own calls, connecting".into(),
    )?;
    // Bob's call reached Ada's number already: it rings both of her devices.
    let targets = vec![phones[0].target(), phones[1].target()];
    let mut y_in = inbound("glare-y-in", "ada", bob_number, ada_number, targets)?;
    let start = run(&mut y_in, SessionInput::Start, 200, &mut phones)?;
    legs_come_up(&mut y_in, &start, 300, &mut phones)?;

    // Either side finds the other; both name the same loser.
    let loser = glare_loser(&ada_call, &bob_call).clone();
    ensure(loser == *glare_loser(&bob_call, &ada_call), || {
        "glare_loser depends on the order".into()
    })?;
    ensure(loser == bob_call, || format!("{loser} lost"))?;
    let survivor = ada_call.clone();
    for call in [&mut y, &mut y_in] {
        let replaced = SessionInput::Replaced {
            survivor: survivor.clone(),
        };
        run(call, replaced.clone(), 1_000, &mut phones)?;
        // Told again (the other node found it too): nothing more happens.
        let again = run(call, replaced, 1_100, &mut phones)?;
        ensure(again.is_empty(), || format!("replaced twice: {again:?}"))?;
        ensure(
            call.is_closed() && call.dismiss_reason() == Some(&DismissReason::Replaced),
            || format!("{} is {:?}", call.id(), call.status()),
        )?;
    }
    ensure(!x.is_closed(), || "the survivor ended".into())?;
    for (phone, call) in [(0, &y_in), (1, &y_in), (2, &y)] {
        let stone = phones[phone].agent.tombstone(call.id()).cloned();
        ensure(
            stone.as_ref().is_some_and(|t| {
                t.reason == Some(DismissReason::Replaced) && t.state == Some(CallState::Ended)
            }),
            || format!("{} ended {} with {stone:?}", phones[phone].id(), call.id()),
        )?;
    }
    ensure(
        phones[0].agent.call_state(&survivor) == Some(CallState::Connecting),
        || "Ada's own call goes on".into(),
    )
}
