//! The simulator's [`EffectExecutor`]: the production dispatcher (`StepDispatcher`,
//! `EffectRunner`) hands it one attempt at a time, as it hands the server's executor real
//! requests. A command is a request on the wire: its future records it and waits until the
//! world delivers Telnyx's answer (after the sampled API latencies both ways), then the world
//! polls it again. A notification is handed to the world at once, which schedules the device
//! deliveries (WebSocket, push, with their own latencies and faults).

use async_trait::async_trait;
use ringmaster_core::session::{Command, Notification};
use ringmaster_engine::{CommandAttempt, EffectExecutor, NotifyAttempt};
use ringmaster_store::OutboxEntry;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Requests and notifications on their way out, and answers on their way back.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    next_ticket: u64,
    /// Commands sent since the world last looked, each with the ticket its answer comes back
    /// under.
    requests: Vec<(u64, Command)>,
    /// Answers the world delivered, by ticket, until their future takes them.
    answers: BTreeMap<u64, CommandAttempt>,
    /// Notifications sent since the world last looked.
    sent: Vec<Notification>,
    /// The node is crashing: a notification goes out, but the attempt never finishes (so it
    /// is never recorded).
    dying: bool,
}

/// The wire, shared by the world and every node's executor.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedWire(Arc<Mutex<Wire>>);

impl SharedWire {
    fn lock(&self) -> MutexGuard<'_, Wire> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a poll: the commands and notifications it sent.
    pub(crate) fn take(&self) -> (Vec<(u64, Command)>, Vec<Notification>) {
        let mut wire = self.lock();
        (
            std::mem::take(&mut wire.requests),
            std::mem::take(&mut wire.sent),
        )
    }

    /// Telnyx's answer to the request sent under `ticket`; the world polls its future next.
    pub(crate) fn answer(&self, ticket: u64, attempt: CommandAttempt) {
        self.lock().answers.insert(ticket, attempt);
    }

    /// Marks the polling node as crashing (`true`) or not.
    pub(crate) fn set_dying(&self, dying: bool) {
        self.lock().dying = dying;
    }
}

/// One command on the wire, waiting for its answer.
struct Request {
    wire: SharedWire,
    command: Option<Command>,
    ticket: Option<u64>,
}

impl Future for Request {
    type Output = CommandAttempt;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<CommandAttempt> {
        let this = &mut *self;
        let mut wire = this.wire.lock();
        match this.ticket {
            None => {
                wire.next_ticket += 1;
                let ticket = wire.next_ticket;
                if let Some(command) = this.command.take() {
                    wire.requests.push((ticket, command));
                }
                this.ticket = Some(ticket);
                // The world polls again when it delivers the answer; no waker is needed.
                Poll::Pending
            }
            Some(ticket) => match wire.answers.remove(&ticket) {
                Some(attempt) => Poll::Ready(attempt),
                None => Poll::Pending,
            },
        }
    }
}

/// Sends a node's effects into the simulated world.
pub(crate) struct SimExecutor {
    /// Where requests go and answers come back.
    pub wire: SharedWire,
}

#[async_trait]
impl EffectExecutor for SimExecutor {
    async fn command(&self, _entry: &OutboxEntry, command: &Command) -> CommandAttempt {
        Request {
            wire: self.wire.clone(),
            command: Some(command.clone()),
            ticket: None,
        }
        .await
    }

    async fn notify(&self, _entry: &OutboxEntry, notification: &Notification) -> NotifyAttempt {
        let dying = {
            let mut wire = self.wire.lock();
            wire.sent.push(notification.clone());
            wire.dying
        };
        if dying {
            // Sent, then the node died before it could record the delivery.
            std::future::pending::<()>().await;
        }
        NotifyAttempt::Delivered
    }
}
