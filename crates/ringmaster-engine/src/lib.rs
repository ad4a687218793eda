//! The coordinator's engine, shared by the server and the simulator: the one path a call's
//! state changes (load the session, run `Session::handle`, commit with compare-and-set, retry
//! from a fresh load), the [`Clock`] sessions are driven by, and the due-timer tick. No HTTP
//! here: the server runs it on its stores and wall clock, the simulator on the in-memory store
//! and its virtual clock, so both exercise the same code. The outbox dispatcher's decisions
//! (lanes, retries, give-ups, the dial budget) live here too, with a step mode
//! ([`StepDispatcher`]) for virtual time.

#![warn(missing_docs)]

pub mod clock;
pub mod commit_metrics;
pub mod dial_gate;
pub mod dial_limit;
pub mod effects;
pub mod engine;
pub mod executor;
pub mod handoff;
pub mod retry;
mod session_cache;
pub mod sessions;
pub mod step;
pub mod timers;

pub use clock::{Clock, ManualClock, SystemClock};
pub use effects::{Disposition, EffectRunner, Recorded, Recording};
pub use engine::{Applied, Created, Engine, EngineError, EngineStats, Step};
pub use executor::{CommandAttempt, EffectExecutor, NotifyAttempt};
pub use sessions::SessionStore;
pub use step::{Dispatched, StepDispatcher, StepOutcome};
