//! `ringmaster bench lifecycle`: how long a call's dismissal takes once one device answers,
//! with many calls ringing, against one store commit measured in the same run.
//!
//! Full calls go through the built-in Telnyx emulator and the real coordinator (SQLite store in
//! a temporary directory), each to its own user with three devices (iOS, Android, web):
//! 1. `ringing`: M callers dial in (`call.initiated`); the coordinator dials the 3 devices and
//!    the run waits until all 3×M legs ring;
//! 2. `commit`: one store commit at a time on the same store, with the calls ringing: the
//!    baseline;
//! 3. `answer`: the web device of every call answers, at a steady rate. For each call the
//!    latency runs from the moment the emulator posts the `call.answered` webhook to the
//!    moment the last dismissal effect is dispatched: the hangups of the two other legs (as
//!    the emulator receives them) and the `call_ended` notifications (the WebSocket one and
//!    a push to each other mobile device, as the notifier receives them);
//! 4. `hangup`: every caller hangs up and the run waits until all legs are over.
//!
//! Everything is bounded by one time limit; a phase cut short reports what it measured.

use super::ingest::{bar, device_uri, percentile, seed_user, start_coordinator, DEVICE_PLATFORMS};
use crate::notify::{Notifier, Notifiers, NotifyError};
use anyhow::Context as _;
use async_trait::async_trait;
use ringmaster_core::session::{Notification, NotifyEvent};
use ringmaster_core::{CallControlId, CallSessionId, EffectId, UserId};
use ringmaster_store::{Commit, DevicePlatform, SqliteStore, Store};
use ringmaster_telnyx::emulator::{CommandOutcome, LegState, LogEntry, Observed};
use ringmaster_telnyx::WebhookSigner;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The device that answers every call (the web one); the others are dismissed.
const WINNER: usize = 2;

/// How much load one run applies.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LifecyclePlan {
    /// Calls ringing at once before the first answer.
    pub calls: usize,
    /// Answers per second.
    pub answer_rate: u32,
    /// Store commits timed for the baseline.
    pub commits: usize,
    /// Longest time the whole run may take; it stops early with what it measured.
    #[serde(serialize_with = "secs")]
    pub time_limit: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LifecyclePlan {
    /// A few seconds in total: a smoke test, figures not meaningful.
    pub fn quick() -> Self {
        Self {
            calls: 10,
            answer_rate: 50,
            commits: 50,
            time_limit: Duration::from_secs(60),
        }
    }

    /// The recorded benchmark.
    pub fn full() -> Self {
        Self {
            calls: 1_000,
            answer_rate: 100,
            commits: 500,
            time_limit: Duration::from_secs(180),
        }
    }
}

/// Latency figures of one measured quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Samples taken.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            samples: samples.len(),
            p50_ms: percentile(&samples, 50.0),
            p99_ms: percentile(&samples, 99.0),
            max_ms: percentile(&samples, 100.0),
        }
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct LifecycleReport {
    /// The load applied.
    pub plan: LifecyclePlan,
    /// Calls whose three device legs all rang.
    pub ringing: usize,
    /// Seconds from the first caller to every device leg ringing.
    pub ringing_secs: f64,
    /// Calls whose `call.answered` webhook was sent.
    pub answered: usize,
    /// Calls with every dismissal effect dispatched.
    pub dismissed: usize,
    /// Calls whose legs were all over after the caller hung up.
    pub ended: usize,
    /// One store commit, with the calls ringing: the baseline.
    pub commit: Latency,
    /// `call.answered` sent → last dismissal effect dispatched.
    pub dismissal: Latency,
    /// Dismissal p99 relative to the commit p99.
    pub p99_ratio: f64,
}

/// A timed moment the latencies are computed from.
enum Mark {
    /// The emulator is posting `call.answered` for this leg.
    Answered(String),
    /// The emulator carried out a hangup of this leg.
    HungUp(String),
    /// The coordinator handed a `call_ended` notification for this call to its channel.
    Ended(CallSessionId),
}

/// Receives every notification the dispatcher delivers; times the `call_ended` ones.
struct Recorder(mpsc::UnboundedSender<(Instant, Mark)>);

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification, _effect: &EffectId) -> Result<(), NotifyError> {
        if matches!(n.event, NotifyEvent::CallEnded { .. }) {
            // The run is over when the receiver is gone.
            let _ = self
                .0
                .send((Instant::now(), Mark::Ended(n.call_session_id.clone())));
        }
        Ok(())
    }
}

/// One benchmark call, once its device legs ring.
struct Call {
    session: CallSessionId,
    caller: CallControlId,
    legs: [CallControlId; 3],
}

/// Every mark so far, in arrival order.
type Marks = Arc<Mutex<Vec<(Instant, Mark)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per call: answer sent → last dismissal effect, for the calls whose dismissal is complete.
fn dismissal_latencies(calls: &[Call], marks: &[(Instant, Mark)]) -> (usize, Vec<Duration>) {
    // Dismissal notifications expected per call: the WebSocket one, and a push to each other
    // mobile device.
    let pushes = DEVICE_PLATFORMS
        .iter()
        .enumerate()
        .filter(|(i, p)| *i != WINNER && **p != DevicePlatform::Web)
        .count();
    let notifications = 1 + pushes;
    let mut answered: HashMap<&str, Instant> = HashMap::new();
    let mut hung_up: HashMap<&str, Instant> = HashMap::new();
    let mut ended: HashMap<&CallSessionId, (usize, Instant)> = HashMap::new();
    for (at, mark) in marks {
        match mark {
            Mark::Answered(leg) => {
                answered.entry(leg).or_insert(*at);
            }
            Mark::HungUp(leg) => {
                hung_up.entry(leg).or_insert(*at);
            }
            Mark::Ended(session) => {
                let e = ended.entry(session).or_insert((0, *at));
                e.0 += 1;
                e.1 = e.1.max(*at);
            }
        }
    }
    let mut latencies = Vec::new();
    let mut sent = 0;
    for call in calls {
        let Some(start) = answered.get(call.legs[WINNER].as_str()) else {
            continue;
        };
        sent += 1;
        let mut last = match ended.get(&call.session) {
            Some((n, at)) if *n >= notifications => *at,
            _ => continue,
        };
        let losers = call
            .legs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != WINNER)
            .map(|(_, leg)| hung_up.get(leg.as_str()).copied());
        let mut complete = true;
        for at in losers {
            match at {
                Some(at) => last = last.max(at),
                None => complete = false,
            }
        }
        if complete {
            latencies.push(last.saturating_duration_since(*start));
        }
    }
    (sent, latencies)
}

/// Runs the lifecycle benchmark under `plan`.
pub async fn lifecycle(plan: LifecyclePlan) -> anyhow::Result<LifecycleReport> {
    let deadline = Instant::now() + plan.time_limit;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let url = format!("sqlite://{}/ringmaster.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await?);
    let users: Vec<(String, String)> = (0..plan.calls)
        .map(|i| (format!("bench-{i}"), format!("+1556{i:07}")))
        .collect();
    for (i, (user, number)) in users.iter().enumerate() {
        seed_user(store.as_ref(), user, number).await?;
        if i % 100 == 0 {
            bar("users", i, users.len());
        }
    }
    bar("users", users.len(), users.len());
    eprintln!();

    let (mark_tx, mut mark_rx) = mpsc::unbounded_channel();
    let recorder: Arc<dyn Notifier> = Arc::new(Recorder(mark_tx.clone()));
    let notifiers = Notifiers {
        websocket: Some(recorder.clone()),
        push: Some(recorder),
    };
    let signer = WebhookSigner::generate();
    let (server, emulator, _) = start_coordinator(store.clone(), &signer, notifiers, |s| {
        // Nothing may time out while the run lasts.
        s.ring_timeout_secs = 600;
    })
    .await?;
    let mut observed = emulator.observe();
    tokio::spawn(async move {
        while let Some(o) = observed.recv().await {
            let mark = match o {
                Observed::Sending {
                    at,
                    event_type,
                    call_control_id: Some(leg),
                } if event_type == "call.answered" => (at, Mark::Answered(leg)),
                Observed::Logged {
                    at,
                    entry: LogEntry::Command(c),
                } if c.action == "hangup" && c.outcome == CommandOutcome::Executed => {
                    match c.call_control_id {
                        Some(leg) => (at, Mark::HungUp(leg)),
                        None => continue,
                    }
                }
                _ => continue,
            };
            if mark_tx.send(mark).is_err() {
                break;
            }
        }
    });
    let marks: Marks = Arc::default();
    {
        let marks = marks.clone();
        tokio::spawn(async move {
            while let Some(mark) = mark_rx.recv().await {
                lock(&marks).push(mark);
            }
        });
    }

    // 1. Every caller dials in; wait for all device legs to ring.
    let started = Instant::now();
    let callers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, (_, number))| emulator.inbound_call(&format!("+1557{i:07}"), number))
        .collect();
    let by_uri: HashMap<String, (usize, usize)> = users
        .iter()
        .enumerate()
        .flat_map(|(i, (user, _))| (0..DEVICE_PLATFORMS.len()).map(move |d| (i, d, user)))
        .map(|(i, d, user)| (device_uri(user, d), (i, d)))
        .collect();
    let mut legs: Vec<[Option<CallControlId>; 3]> = vec![Default::default(); plan.calls];
    loop {
        let mut rang = 0;
        for snap in emulator.calls() {
            if let Some(&(i, d)) = by_uri.get(&snap.to) {
                if snap.state == LegState::Ringing && legs[i][d].is_none() {
                    legs[i][d] = Some(snap.call_control_id);
                }
            }
        }
        for l in &legs {
            rang += l.iter().filter(|c| c.is_some()).count();
        }
        bar("ringing", rang, plan.calls * 3);
        if rang == plan.calls * 3 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!();
    let ringing_secs = started.elapsed().as_secs_f64();
    let calls: Vec<Call> = callers
        .into_iter()
        .zip(legs)
        .filter_map(|(caller, legs)| {
            let [Some(a), Some(b), Some(c)] = legs else {
                return None;
            };
            Some(Call {
                session: caller.call_session_id,
                caller: caller.call_control_id,
                legs: [a, b, c],
            })
        })
        .collect();

    // 2. The baseline: single commits on the same store, with the calls ringing.
    let mut commits = Vec::with_capacity(plan.commits);
    for i in 0..plan.commits {
        if Instant::now() >= deadline {
            break;
        }
        let mut commit = Commit::new(
            CallSessionId::new(format!("bench-commit-{i}")),
            UserId::new("bench-0"),
            None,
            serde_json::json!({ "bench": i }),
            "ended",
            crate::clock::system_now(),
        );
        commit.closed = true;
        commit.dedupe_key = Some(format!("bench-commit-{i}"));
        let sent = Instant::now();
        store.commit(commit).await?;
        commits.push(sent.elapsed());
        if i % 10 == 0 {
            bar("commit", i, plan.commits);
        }
    }
    bar("commit", commits.len(), plan.commits);
    eprintln!();

    // 3. One answer per call at a steady rate; then wait for every dismissal.
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.answer_rate.max(1));
    for (i, call) in calls.iter().enumerate() {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        if let Err(e) = emulator.answer(&call.legs[WINNER]) {
            tracing::warn!(call_session_id = %call.session, error = %e, "answer refused");
        }
        if i % 10 == 0 {
            let (_, done) = dismissal_latencies(&calls, &lock(&marks));
            bar("answer", done.len(), calls.len());
        }
    }
    let (answered, dismissal) = loop {
        let (answered, done) = dismissal_latencies(&calls, &lock(&marks));
        bar("answer", done.len(), calls.len());
        if done.len() >= answered && answered == calls.len() || Instant::now() >= deadline {
            break (answered, done);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!();

    // 4. Every caller hangs up; wait for every leg to be over.
    for call in &calls {
        // A leg already gone is fine: the call is over either way.
        let _ = emulator.hangup(&call.caller);
    }
    let ended = loop {
        let snaps: HashMap<CallControlId, LegState> = emulator
            .calls()
            .into_iter()
            .map(|s| (s.call_control_id, s.state))
            .collect();
        let ended = calls
            .iter()
            .filter(|c| {
                std::iter::once(&c.caller)
                    .chain(&c.legs)
                    .all(|leg| snaps.get(leg) == Some(&LegState::Ended))
            })
            .count();
        bar("hangup", ended, calls.len());
        if ended == calls.len() || Instant::now() >= deadline {
            break ended;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!();
    server.abort();
    drop(emulator);

    let commit = Latency::of(commits);
    let dismissal = Latency::of(dismissal);
    Ok(LifecycleReport {
        plan,
        ringing: calls.len(),
        ringing_secs,
        answered,
        dismissed: dismissal.samples,
        ended,
        p99_ratio: dismissal.p99_ms / commit.p99_ms.max(1e-9),
        commit,
        dismissal,
    })
}

/// The report as a table.
pub fn table(r: &LifecycleReport) -> String {
    let mut out = format!(
        "{} calls ringing (all rang after {:.1} s), {} answers/s\n\
         answered {}, dismissed {}, ended {}\n\
         {:<28} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
        r.plan.calls,
        r.ringing_secs,
        r.plan.answer_rate,
        r.answered,
        r.dismissed,
        r.ended,
        "measure",
        "samples",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 ratio"
    );
    for (name, l, ratio) in [
        ("store commit (baseline)", &r.commit, 1.0),
        ("answer -> all dismissals", &r.dismissal, r.p99_ratio),
    ] {
        out.push_str(&format!(
            "{:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>8.2}x\n",
            name, l.samples, l.p50_ms, l.p99_ms, l.max_ms, ratio
        ));
    }
    out
}
