//! The Ringmaster coordinator: Telnyx webhooks in, one session per call driven through the
//! store's compare-and-set, Call Control commands and notifications out through the outbox,
//! and the admin and device HTTP APIs. The `ringmaster` binary (`serve`, `call`) is a thin
//! shell around this library; the end-to-end tests start it in-process with [`server::start`].
//! The Pusher-protocol WebSocket layer ([`realtime`]) and FCM/APNs push ([`push`]) plug in as
//! notifiers.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod bench;
pub mod call_cmd;
pub mod config;
pub mod demo;
pub mod dial_limit;
pub mod dispatch;
pub mod error;
pub mod fatal;
pub mod glare;
pub mod host_webhooks;
pub mod http_server;
pub mod limits;
pub mod logging;
pub mod native;
pub mod notify;
pub mod openapi;
pub mod operator;
pub mod provider;
pub mod push;
pub mod quality;
pub mod rate_limit;
pub mod realtime;
pub mod retention;
pub mod routes;
pub mod secrets;
pub mod serve_cmd;
pub mod server;
pub mod stray_leg;
pub mod telemetry;
pub mod timer_loop;
pub mod tokens;
pub mod web;

/// The clock sessions are driven by (the engine crate's).
pub use ringmaster_engine::clock;
/// The engine: load, `Session::handle`, compare-and-set commit, retry (the engine crate's).
pub use ringmaster_engine::engine;
/// The due-timer tick (the engine crate's); the loop that runs it is [`timer_loop`].
pub use ringmaster_engine::timers;

pub use app::{AppState, SandboxInfo, Settings};
pub use clock::{Clock, SystemClock};
pub use notify::{Delivery, Notifier, Notifiers, NotifyError};
pub use server::{start, RunningServer, ServerSetup};
