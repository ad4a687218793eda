//! The per-account dial rate limit; it lives in the engine crate, next to the dispatcher logic
//! that asks it, so the simulator's dispatcher runs the same budget.

pub use ringmaster_engine::dial_limit::*;
