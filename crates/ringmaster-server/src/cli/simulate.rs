//! `ringmaster simulate`: seeded random runs of the deterministic simulator, the spec's T1–T15
//! scenarios and the answer-race model check.

use anyhow::{bail, Context};
use clap::Args;
use ringmaster_sim::{model, run_batch, scenarios, Batch, FaultMix};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Most runs one invocation accepts.
const MAX_RUNS: u64 = 10_000_000;

/// Options of `ringmaster simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Number of random runs.
    #[arg(long, default_value_t = 1_000)]
    pub runs: u64,
    /// Seed of the first run (run i uses seed + i); `--runs 1 --seed S` replays run S.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fault mix: none, default, harsh or poll-only, optionally followed by overrides such as
    /// `harsh,node_crash=1,sip_lost=0.8`.
    #[arg(long, default_value = "default")]
    pub faults: String,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the subcommand; fails (non-zero exit) when an invariant is violated or a scenario
/// fails.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.runs > MAX_RUNS {
        bail!("--runs must be 1..={MAX_RUNS}");
    }
    let mix = FaultMix::parse(&args.faults).context("--faults")?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if !(1..=64).contains(&threads) {
        bail!("--threads must be 1..=64");
    }

    let started = Instant::now();
    let mut progress = Progress::new(args.runs);
    let batch = run_batch(args.seed, args.runs, &mix, threads, |done, batch| {
        progress.update(done, batch)
    });
    progress.finish();
    let elapsed = started.elapsed();
    let scenario_results = scenarios::run_all();
    let failed_scenarios = scenario_results.failed().count();

    eprintln!(
        "{} runs in {:.2}s ({:.0} runs/s, {threads} threads), fault mix {mix}",
        batch.runs(),
        elapsed.as_secs_f64(),
        batch.runs() as f64 / elapsed.as_secs_f64().max(1e-9),
    );

    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = batch.summary(scenario_results);
        serde_json::to_writer(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        report(&mut out, &batch, &scenario_results)?;
    }
    out.flush()?;

    let violations = batch.violations().len();
    if violations > 0 || failed_scenarios > 0 {
        bail!("{violations} invariant violations, {failed_scenarios} failed scenarios");
    }
    Ok(())
}

fn report(
    out: &mut impl Write,
    batch: &Batch,
    scenario_results: &scenarios::Verdicts,
) -> anyhow::Result<()> {
    const SHOWN: usize = 20;
    let violations = batch.violations();
    writeln!(out, "runs: {}", batch.runs())?;
    writeln!(
        out,
        "coordinator: {} compare-and-set conflicts retried, {} node crashes recovered from the outbox",
        batch.cas_conflicts, batch.node_crashes
    )?;
    writeln!(
        out,
        "dispatcher: {} effect attempts retried, {} commands given up",
        batch.dispatch_retries, batch.commands_given_up
    )?;
    writeln!(out, "violations: {}", violations.len())?;
    for v in violations.iter().take(SHOWN) {
        writeln!(out)?;
        writeln!(
            out,
            "seed {} violates {}: {}",
            v.seed, v.invariant, v.detail
        )?;
        writeln!(
            out,
            "  replay: ringmaster simulate --runs 1 --seed {} --faults <same mix>",
            v.seed
        )?;
        for line in &v.trace {
            writeln!(out, "  {line}")?;
        }
    }
    if violations.len() > SHOWN {
        writeln!(out, "... and {} more", violations.len() - SHOWN)?;
    }
    writeln!(out)?;
    writeln!(out, "dismissal latency (ms from the backend ending the ring to the ringer stopping), by winning channel:")?;
    writeln!(
        out,
        "  {:<10} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "channel", "p50", "p95", "p99", "max", "count"
    )?;
    for (channel, s) in batch.latency_table() {
        writeln!(
            out,
            "  {:<10} {:>7} {:>7} {:>7} {:>7} {:>8}",
            channel, s.p50, s.p95, s.p99, s.max, s.count
        )?;
    }
    writeln!(out)?;
    let line: Vec<String> = scenario_results
        .0
        .iter()
        .map(|(name, verdict)| format!("{name}={verdict}"))
        .collect();
    writeln!(out, "scenarios: {}", line.join(" "))?;
    match (model::check(3, 2, true), model::check(3, 2, false)) {
        (Ok(real), Ok(mutant)) => {
            let verdict = if real.counterexamples.is_empty() {
                "never two bridges and winner recorded hold".to_owned()
            } else {
                format!("FAILS: {:?}", real.counterexamples)
            };
            let caught: Vec<&str> = mutant
                .counterexamples
                .iter()
                .map(|c| c.0.as_str())
                .collect();
            writeln!(
                out,
                "model check (stateright, answer race of 3 devices, 2 crashes): {} states, {verdict}; without compare-and-set: {} states, fails {caught:?}",
                real.unique_states, mutant.unique_states
            )?;
        }
        (Err(e), _) | (_, Err(e)) => writeln!(out, "model check could not run: {e}")?,
    }
    Ok(())
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise.
struct Progress {
    total: u64,
    tty: bool,
    last_tenth: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    fn update(&mut self, done: u64, batch: &Batch) {
        let width = 30u64;
        let filled = (done * width / self.total.max(1)) as usize;
        let bar = format!(
            "[{}{}] {done}/{} runs, {} violations",
            "#".repeat(filled),
            ".".repeat(width as usize - filled),
            self.total,
            batch.violations().len()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{bar}");
        } else {
            let tenth = done * 10 / self.total.max(1);
            if tenth > self.last_tenth || done == self.total {
                self.last_tenth = tenth;
                let _ = writeln!(err, "{bar}");
            }
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(runs: u64, faults: &str) -> SimulateArgs {
        SimulateArgs {
            runs,
            seed: 1,
            faults: faults.to_owned(),
            json: true,
            threads: Some(1),
        }
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_runs() {
        assert!(run(args(0, "default")).is_err());
        assert!(run(args(MAX_RUNS + 1, "default")).is_err());
        let err = run(args(1, "sunny")).unwrap_err();
        assert!(format!("{err:#}").contains("unknown fault mix"), "{err:#}");
    }

    #[test]
    fn a_small_batch_passes_and_the_report_lists_every_channel_and_scenario() {
        run(args(5, "harsh")).expect("no violation in 5 harsh runs");
        let batch = run_batch(1, 5, &FaultMix::harsh(), 1, |_, _| {});
        let mut text = Vec::new();
        report(&mut text, &batch, &scenarios::run_all()).unwrap();
        let text = String::from_utf8(text).unwrap();
        for needle in [
            "websocket",
            "push",
            "poll",
            "sip",
            "T1=pass",
            "T15=pass",
            "states",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
