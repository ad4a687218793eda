//! The coordinator's engine, shared by the server and the simulator: the one path a call's
//! state changes (load the session, run `Session::handle`, commit with compare-and-set, retry
//! from a fresh load), the [`Clock`] sessions are driven by, and the due-timer tick. No HTTP
//! here: the server runs it on its stores and wall clock, the simulator on the in-memory store
//! and its virtual clock, so both exercise the same code.

#![warn(missing_docs)]

pub mod clock;
pub mod commit_metrics;
pub mod engine;
pub mod sessions;
pub mod timers;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Applied, Created, Engine, EngineError, Step};
pub use sessions::SessionStore;
