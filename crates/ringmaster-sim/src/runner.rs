//! Many seeded random runs: violations with their traces and the per-channel dismissal latency.

use crate::check::Violation;
use crate::faults::FaultMix;
use crate::plan::Plan;
use crate::world::World;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringmaster_device::Channel;
use serde::Serialize;
use std::collections::BTreeMap;

/// Trace lines kept with a violation.
const TRACE_TAIL: usize = 60;

/// The plan of random run `seed` under `mix`.
pub fn random_plan(seed: u64, mix: &FaultMix) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_91a4);
    Plan::random(seed, mix, &mut rng)
}

/// One random run, checked.
pub fn run_seed(seed: u64, mix: &FaultMix) -> RunOutcome {
    let world = World::new(random_plan(seed, mix)).run();
    RunOutcome::of(&world)
}

/// One random run; a panic anywhere in it becomes a `no_panic` violation.
pub fn run_guarded(seed: u64, mix: &FaultMix) -> RunOutcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, mix))).unwrap_or_else(
        |panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            RunOutcome {
                violations: vec![Violation {
                    seed,
                    invariant: "no_panic".to_owned(),
                    detail: msg.clone(),
                    trace: vec![msg],
                }],
                ..RunOutcome::default()
            }
        },
    )
}

/// What one run produced.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    /// Violations, each with the tail of the trace.
    pub violations: Vec<Violation>,
    /// Per-channel dismissal latencies (ms).
    pub latencies: BTreeMap<Channel, Vec<u64>>,
    /// Compare-and-set conflicts seen.
    pub cas_conflicts: u64,
    /// Node crashes.
    pub node_crashes: u64,
    /// Effect attempts the dispatcher recorded for a retry.
    pub dispatch_retries: u64,
    /// Commands the dispatcher gave up on.
    pub commands_given_up: u64,
}

impl RunOutcome {
    /// Extracts the outcome of a finished world.
    pub fn of(world: &World) -> Self {
        let trace = world.trace();
        let violations = world
            .violations()
            .iter()
            .map(|v| {
                // Everything up to and including the violation line, at most TRACE_TAIL lines.
                let marker = format!("VIOLATION {}: {}", v.invariant, v.detail);
                let end = trace
                    .iter()
                    .position(|l| l.ends_with(&marker))
                    .map_or(trace.len(), |i| i + 1);
                let start = end.saturating_sub(TRACE_TAIL);
                let mut lines: Vec<String> = Vec::with_capacity(end - start + 1);
                if start > 0 {
                    // Keep the plan line: it is what a replay needs.
                    lines.push(trace[0].clone());
                }
                lines.extend(trace[start..end].iter().cloned());
                Violation {
                    trace: lines,
                    ..v.clone()
                }
            })
            .collect();
        Self {
            violations,
            latencies: world.obs.latencies.clone(),
            cas_conflicts: world.obs.cas_conflicts,
            node_crashes: world.obs.node_crashes,
            dispatch_retries: world.obs.dispatch_retries,
            commands_given_up: world.obs.commands_given_up,
        }
    }
}

/// Latency percentiles of one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
    /// Dismissals this channel won.
    pub count: u64,
}

impl ChannelStats {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let pick = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
            max: samples[samples.len() - 1],
            count: samples.len() as u64,
        }
    }
}

/// The result of a batch, in the shape `ringmaster simulate --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Runs made.
    pub runs: u64,
    /// Every violation.
    pub violations: Vec<JsonViolation>,
    /// Per channel (`sip`, `websocket`, `push`, `poll`).
    pub dismissal_latency_ms: BTreeMap<String, ChannelStats>,
    /// T1–T15 by name: `pass` or `fail: …`.
    pub scenarios: crate::scenarios::Verdicts,
}

/// A violation as printed: seed, invariant, trace (last line: what was seen).
#[derive(Clone, Debug, Serialize)]
pub struct JsonViolation {
    /// Seed to replay.
    pub seed: u64,
    /// Which invariant.
    pub invariant: String,
    /// Trace lines.
    pub trace: Vec<String>,
}

/// Accumulates run outcomes in seed order.
#[derive(Debug, Default)]
pub struct Batch {
    runs: u64,
    violations: Vec<Violation>,
    latencies: BTreeMap<Channel, Vec<u64>>,
    /// Compare-and-set conflicts over all runs.
    pub cas_conflicts: u64,
    /// Node crashes over all runs.
    pub node_crashes: u64,
    /// Effect attempts the dispatcher recorded for a retry, over all runs.
    pub dispatch_retries: u64,
    /// Commands the dispatcher gave up on, over all runs.
    pub commands_given_up: u64,
}

impl Batch {
    /// Adds one run.
    pub fn add(&mut self, outcome: RunOutcome) {
        self.runs += 1;
        self.violations.extend(outcome.violations);
        for (channel, mut v) in outcome.latencies {
            self.latencies.entry(channel).or_default().append(&mut v);
        }
        self.cas_conflicts += outcome.cas_conflicts;
        self.node_crashes += outcome.node_crashes;
        self.dispatch_retries += outcome.dispatch_retries;
        self.commands_given_up += outcome.commands_given_up;
    }

    /// Runs added.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Per-channel percentiles, every channel listed.
    pub fn latency_table(&self) -> BTreeMap<String, ChannelStats> {
        Channel::ALL
            .iter()
            .map(|c| {
                let mut samples = self.latencies.get(c).cloned().unwrap_or_default();
                (c.as_str().to_owned(), ChannelStats::of(&mut samples))
            })
            .collect()
    }

    /// The JSON summary.
    pub fn summary(&self, scenarios: crate::scenarios::Verdicts) -> Summary {
        Summary {
            runs: self.runs,
            violations: self
                .violations
                .iter()
                .map(|v| JsonViolation {
                    seed: v.seed,
                    invariant: v.invariant.clone(),
                    trace: v.trace.clone(),
                })
                .collect(),
            dismissal_latency_ms: self.latency_table(),
            scenarios,
        }
    }
}

/// Runs seeds `first..first + runs` on `threads` threads; `progress` is called with the number
/// of runs done so far (from the calling thread). Results are merged in seed order, so the
/// batch is the same whatever the thread count.
pub fn run_batch(
    first: u64,
    runs: u64,
    mix: &FaultMix,
    threads: usize,
    mut progress: impl FnMut(u64, &Batch),
) -> Batch {
    let threads = threads.clamp(1, 64) as u64;
    let mut batch = Batch::default();
    let chunk = 200u64;
    let mut next = 0u64;
    while next < runs {
        let span = (chunk * threads).min(runs - next);
        let start = first.wrapping_add(next);
        let per = span.div_ceil(threads);
        let results: Vec<Vec<RunOutcome>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(span);
                    s.spawn(move || {
                        (lo..hi)
                            .map(|i| run_guarded(start.wrapping_add(i), mix))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for outcome in results.into_iter().flatten() {
            batch.add(outcome);
        }
        next += span;
        progress(next, &batch);
    }
    batch
}
