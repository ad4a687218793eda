//! The device agent behind the FFI: one object per device, fed inputs and the time, answering
//! with effects. Every call runs on a working copy inside the panic guard, so an error or a
//! panic leaves the agent exactly as it was.

use crate::error::{guard, AgentError, SnapshotError};
use ringmaster_core::{Call, Transition};
use ringmaster_core::{CallSessionId, CallState, DeviceId, Direction, Platform, Timestamp};
use ringmaster_device::{Effect, Input, Snapshot, Tombstone};
use std::sync::{Arc, Mutex, MutexGuard};

/// How the agent behaves; `default_agent_config()` gives the design's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct AgentConfig {
    /// Status poll period while a call rings or awaits its outcome (default 3000).
    pub poll_interval_ms: u64,
    /// An `incoming_call` older than this (by its `sent_at`) does not ring (default 60000).
    pub max_ring_age_ms: u64,
}

impl From<AgentConfig> for ringmaster_device::AgentConfig {
    fn from(c: AgentConfig) -> Self {
        ringmaster_device::AgentConfig {
            poll_interval_ms: c.poll_interval_ms,
            max_ring_age_ms: c.max_ring_age_ms,
        }
    }
}

/// The design's configuration: poll every 3 s, ignore rings older than 60 s.
#[uniffi::export]
pub fn default_agent_config() -> AgentConfig {
    let d = ringmaster_device::AgentConfig::default();
    AgentConfig {
        poll_interval_ms: d.poll_interval_ms,
        max_ring_age_ms: d.max_ring_age_ms,
    }
}

/// A live call as the agent holds it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct CallView {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The canonical state.
    pub state: CallState,
    /// When the agent created the call.
    pub started_at: Timestamp,
    /// Every transition so far, oldest first.
    pub history: Vec<Transition>,
}

impl From<&Call> for CallView {
    fn from(call: &Call) -> Self {
        CallView {
            direction: call.direction(),
            state: call.state(),
            started_at: call.started_at(),
            history: call.history().to_vec(),
        }
    }
}

/// An agent rebuilt from its snapshot, with what to do about the calls it found.
#[derive(uniffi::Record)]
pub struct Restored {
    /// The agent.
    pub agent: Arc<DeviceAgent>,
    /// Carry these out before feeding the agent anything else.
    pub effects: Vec<Effect>,
}

/// Rebuilds the agent from the bytes of its last `Persist` after a crash, kill or reboot,
/// with the effects to carry out for the calls it finds (spec T1–T4).
#[uniffi::export]
pub fn restore_agent(
    device_id: DeviceId,
    platform: Platform,
    config: AgentConfig,
    snapshot: Vec<u8>,
    now: Timestamp,
) -> Result<Restored, SnapshotError> {
    guard(|| {
        let snapshot = Snapshot::from_json(&snapshot)?;
        let (agent, effects) = ringmaster_device::DeviceAgent::restore(
            &device_id,
            platform,
            config.into(),
            snapshot,
            now,
        )?;
        Ok(Restored {
            agent: DeviceAgent::wrap(agent),
            effects,
        })
    })
}

/// The device agent: the device's calls, driven by inputs and the platform's clock.
#[derive(uniffi::Object)]
pub struct DeviceAgent {
    inner: Mutex<ringmaster_device::DeviceAgent>,
    #[cfg(any(test, feature = "test-hooks"))]
    panic_next: Mutex<Option<String>>,
}

impl DeviceAgent {
    fn wrap(agent: ringmaster_device::DeviceAgent) -> Arc<Self> {
        Arc::new(DeviceAgent {
            inner: Mutex::new(agent),
            #[cfg(any(test, feature = "test-hooks"))]
            panic_next: Mutex::new(None),
        })
    }

    /// The agent, even if an earlier caller panicked while holding the lock: the guard only
    /// ever writes back a fully handled working copy, so the value is always consistent.
    fn agent(&self) -> MutexGuard<'_, ringmaster_device::DeviceAgent> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(any(test, feature = "test-hooks"))]
    fn take_armed_panic(&self) -> Option<String> {
        self.panic_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    #[cfg(not(any(test, feature = "test-hooks")))]
    fn take_armed_panic(&self) -> Option<String> {
        None
    }
}

#[uniffi::export]
impl DeviceAgent {
    /// A fresh agent (first install, or nothing was ever persisted).
    #[uniffi::constructor]
    pub fn new(
        device_id: DeviceId,
        platform: Platform,
        config: AgentConfig,
    ) -> Result<Arc<Self>, AgentError> {
        guard(|| {
            let agent = ringmaster_device::DeviceAgent::new(device_id, platform, config.into());
            // The snapshot's bounds are the agent's: an id the agent could never persist is
            // refused here rather than on the first write.
            agent
                .snapshot()
                .validate()
                .map_err(|e| AgentError::Invalid {
                    detail: e.to_string(),
                })?;
            Ok(DeviceAgent::wrap(agent))
        })
    }

    /// Handles one input at `now` and returns the effects to carry out, in order. On error
    /// (including a panic in the core) the agent is unchanged and there is nothing to do.
    pub fn handle(&self, input: Input, now: Timestamp) -> Result<Vec<Effect>, AgentError> {
        let mut agent = self.agent();
        let mut work = agent.clone();
        let armed = self.take_armed_panic();
        let effects = guard::<_, AgentError>(|| {
            let effects = work.handle(input, now)?;
            if let Some(message) = armed {
                // Test hook: fail after the core has changed the working copy, so the tests
                // see that a panic leaves no trace.
                panic!("{message}");
            }
            Ok(effects)
        })?;
        *agent = work;
        Ok(effects)
    }

    /// The bytes to store now (the same as the last `Persist` effect carried).
    pub fn snapshot(&self) -> Vec<u8> {
        self.agent().snapshot().to_json()
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.agent().device_id().clone()
    }

    /// The platform whose SDK feeds the agent.
    pub fn platform(&self) -> Platform {
        self.agent().platform()
    }

    /// The next report sequence number.
    pub fn next_seq(&self) -> u64 {
        self.agent().next_seq()
    }

    /// The call's canonical state here: live, or final for a finished call; `None` if it never
    /// rang here or is forgotten.
    pub fn call_state(&self, call_session_id: CallSessionId) -> Option<CallState> {
        self.agent().call_state(&call_session_id)
    }

    /// The live call with its history, if the agent holds it.
    pub fn call(&self, call_session_id: CallSessionId) -> Option<CallView> {
        self.agent().call(&call_session_id).map(CallView::from)
    }

    /// Whether the ringer is on for this call.
    pub fn is_ringing(&self, call_session_id: CallSessionId) -> bool {
        self.agent().is_ringing(&call_session_id)
    }

    /// Whether the agent wants this call polled.
    pub fn is_polling(&self, call_session_id: CallSessionId) -> bool {
        self.agent().is_polling(&call_session_id)
    }

    /// The calls whose ringer is on.
    pub fn ringing_calls(&self) -> Vec<CallSessionId> {
        self.agent().ringing_calls().cloned().collect()
    }

    /// What is remembered about a finished call.
    pub fn tombstone(&self, call_session_id: CallSessionId) -> Option<Tombstone> {
        self.agent().tombstone(&call_session_id).cloned()
    }
}

#[cfg(any(test, feature = "test-hooks"))]
#[uniffi::export]
impl DeviceAgent {
    /// Test hook (feature `test-hooks`, never in app builds): the next `handle` panics inside
    /// the guarded region after the core has processed its input.
    pub fn panic_on_next_input(&self, message: String) {
        *self.panic_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Refusal;
    use ringmaster_core::session::{DeviceCallStatus, DeviceStatus};
    use ringmaster_core::{DismissReason, Trigger};
    use ringmaster_device::{AppAction, Delivery, StopReason};

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn call() -> CallSessionId {
        CallSessionId::new("v3:call-1")
    }

    fn me() -> DeviceId {
        DeviceId::new("android-1")
    }

    fn agent() -> Arc<DeviceAgent> {
        DeviceAgent::new(me(), Platform::Android, default_agent_config()).unwrap()
    }

    fn incoming() -> Input {
        Input::IncomingCall {
            call_session_id: call(),
            from: "+15551234567".into(),
            sent_at: t(0),
            via: Delivery::Push { voip: false },
        }
    }

    fn count(fx: &[Effect], pred: impl Fn(&Effect) -> bool) -> usize {
        fx.iter().filter(|e| pred(e)).count()
    }

    #[test]
    fn a_panic_in_the_core_is_an_error_and_leaves_the_agent_untouched() {
        let a = agent();
        let before = a.snapshot();
        a.panic_on_next_input("boom".into());
        assert_eq!(
            a.handle(incoming(), t(10)),
            Err(AgentError::Panic {
                detail: "boom".into()
            })
        );
        assert_eq!(a.snapshot(), before);
        assert_eq!(a.call_state(call()), None);
        assert!(a.ringing_calls().is_empty());
        // Still usable: the same input now rings.
        let fx = a.handle(incoming(), t(20)).unwrap();
        assert_eq!(count(&fx, |e| matches!(e, Effect::StartRinging { .. })), 1);
        assert!(a.is_ringing(call()));
    }

    #[test]
    fn an_illegal_move_is_a_typed_refusal_and_changes_nothing() {
        let a = agent();
        a.handle(incoming(), t(0)).unwrap();
        let before = a.snapshot();
        let err = a
            .handle(
                Input::App {
                    call_session_id: call(),
                    action: AppAction::Hold,
                },
                t(5),
            )
            .unwrap_err();
        assert_eq!(
            err,
            AgentError::Refused {
                call_session_id: call(),
                refusal: Refusal::Illegal {
                    state: CallState::RingingInbound,
                    trigger: Trigger::Hold
                }
            }
        );
        assert_eq!(a.snapshot(), before);
        assert!(a.is_ringing(call()));
    }

    #[test]
    fn a_ringing_call_survives_a_kill_through_the_snapshot_bytes_and_is_missed_once() {
        let a = agent();
        let fx = a.handle(incoming(), t(0)).unwrap();
        let Some(Effect::Persist(snapshot)) = fx.first() else {
            panic!("Persist must come first: {fx:?}");
        };
        let bytes = snapshot.to_json();
        drop(a);

        let restored = restore_agent(
            me(),
            Platform::Android,
            default_agent_config(),
            bytes,
            t(4_000),
        )
        .unwrap();
        let b = restored.agent;
        assert!(!b.is_ringing(call()), "the ringer died with the process");
        assert!(b.is_polling(call()));
        let missed = Input::PollResult {
            call_session_id: call(),
            status: DeviceCallStatus {
                status: DeviceStatus::Missed,
                device_id: None,
                reason: Some(DismissReason::Timeout),
                version: 4,
            },
        };
        let mut all = b.handle(missed.clone(), t(6_000)).unwrap();
        all.extend(b.handle(missed, t(9_000)).unwrap());
        assert_eq!(
            count(&all, |e| matches!(e, Effect::ShowMissedCall { .. })),
            1
        );
        assert_eq!(b.call_state(call()), Some(CallState::Missed));
        assert!(!all.iter().any(|e| matches!(
            e,
            Effect::StopRinging {
                reason: StopReason::Dismissed { .. },
                ..
            }
        )));
    }

    #[test]
    fn bad_snapshots_and_ids_are_typed_errors() {
        assert!(matches!(
            restore_agent(
                me(),
                Platform::Ios,
                default_agent_config(),
                b"{".to_vec(),
                t(0)
            ),
            Err(SnapshotError::Malformed { .. })
        ));
        let other = DeviceAgent::new("other".into(), Platform::Ios, default_agent_config())
            .unwrap()
            .snapshot();
        assert!(matches!(
            restore_agent(me(), Platform::Ios, default_agent_config(), other, t(0)),
            Err(SnapshotError::WrongDevice)
        ));
        assert!(matches!(
            DeviceAgent::new(
                "x".repeat(10_000).into(),
                Platform::Ios,
                default_agent_config()
            ),
            Err(AgentError::Invalid { .. })
        ));
    }
}
