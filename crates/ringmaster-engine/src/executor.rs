//! What the dispatcher asks of the outside world: send one Telnyx command, deliver one
//! notification, once each. The server's executor talks to Telnyx and the push providers; the
//! simulator's turns each effect into one of its own scheduled events. Retrying is never the
//! executor's business: the dispatcher decides from what it returns.

use async_trait::async_trait;
use ringmaster_core::session::{Action, Command, CommandError, Input, Notification};
use ringmaster_core::CallControlId;
use ringmaster_store::OutboxEntry;
use std::time::Duration;

/// The input reporting `command`'s final `outcome` to its session: a dial's result carries
/// the leg Telnyx created (a success without one is a failure), any other command's only
/// success or failure. Shared by the server's executor and the simulator's.
pub fn command_input(
    command: &Command,
    outcome: Result<Option<CallControlId>, CommandError>,
) -> Input {
    let command_id = command.command_id.clone();
    match &command.action {
        Action::Dial { .. } => Input::DialResult {
            command_id,
            result: outcome.and_then(|leg| {
                leg.ok_or_else(|| CommandError {
                    code: None,
                    message: "dial response without call_control_id".to_owned(),
                })
            }),
        },
        _ => Input::CommandResult {
            command_id,
            result: outcome.map(|_| ()),
        },
    }
}

/// The result of sending one command once.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandAttempt {
    /// Telnyx gave a final answer (success or a refusal); this input reports it to the session.
    Answered(Input),
    /// No final answer (network, 5xx, 429): the dispatcher retries or gives up.
    Transient {
        /// What went wrong.
        message: String,
        /// How long the provider asked to wait, when it said.
        retry_after: Option<Duration>,
        /// The input reporting the failure to the session, should the dispatcher give up.
        given_up: Input,
    },
}

/// The result of delivering one notification once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyAttempt {
    /// Delivered, or nothing to deliver it to.
    Delivered,
    /// Failed for now; the provider's `Retry-After`, when it gave one.
    Temporary {
        /// What went wrong.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// Will never succeed (bad token, refused payload).
    Permanent(String),
}

/// Executes outbox effects, one attempt each.
#[async_trait]
pub trait EffectExecutor: Send + Sync {
    /// Sends `command` (from `entry`) to Telnyx once.
    async fn command(&self, entry: &OutboxEntry, command: &Command) -> CommandAttempt;

    /// Delivers `notification` (from `entry`) once.
    async fn notify(&self, entry: &OutboxEntry, notification: &Notification) -> NotifyAttempt;
}
