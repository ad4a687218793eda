//! `ringmaster bench`: measures a hot path against a ceiling run in the same invocation.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ringmaster_server::bench::{self, IngestPlan};
use std::time::Duration;

/// Options of `ringmaster bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Webhook acknowledgement: new calls and unknown numbers against a minimal durable ingest.
    Ingest(IngestArgs),
    /// WebSocket fan-out: N sockets on one channel, events published through the signed HTTP
    /// API; delivery latency p50/p99, memory per socket and connect rate.
    Fanout(bench::fanout::FanoutArgs),
    /// Full calls through the emulator, many ringing at once: one device answers, time until
    /// every dismissal effect is dispatched, against one store commit.
    Lifecycle(LifecycleArgs),
}

/// Options of `ringmaster bench lifecycle`.
#[derive(Args, Debug)]
struct LifecycleArgs {
    /// A few seconds with little load: a smoke test, figures not meaningful.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Calls ringing at once [default: 1000, --quick 10].
    #[arg(long)]
    calls: Option<usize>,
    /// Answers per second [default: 100, --quick 50].
    #[arg(long)]
    answer_rate: Option<u32>,
    /// Store commits timed for the baseline [default: 500, --quick 50].
    #[arg(long)]
    commits: Option<usize>,
    /// Longest time the whole run may take, in seconds [default: 180, --quick 60].
    #[arg(long)]
    time_limit_secs: Option<u64>,
    /// How the push provider behaves for the whole run.
    #[arg(
        long,
        value_enum,
        default_value = "healthy",
        conflicts_with = "push_outage"
    )]
    push: bench::lifecycle::PushProvider,
    /// Run once per push provider (healthy, hanging, unavailable) and report how much later
    /// the Telnyx commands went out with a failing provider (the time limit is per run).
    #[arg(long)]
    push_outage: bool,
}

/// Options of `ringmaster bench ingest`.
#[derive(Args, Debug)]
struct IngestArgs {
    /// A few seconds with little load: a smoke test, figures not meaningful.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Webhooks per scenario [default: 20000, --quick 300].
    #[arg(long)]
    webhooks: Option<usize>,
    /// Concurrent connections [default: 64, --quick 8].
    #[arg(long)]
    connections: Option<usize>,
    /// Longest time one scenario may run, in seconds [default: 60, --quick 20].
    #[arg(long)]
    time_limit_secs: Option<u64>,
    /// A PostgreSQL server (postgres://…): also measure new calls against one coordinator and
    /// against two sharing a fresh schema there (dropped afterwards).
    #[arg(long)]
    database_url: Option<String>,
    /// Sessions the coordinator's engine remembers; 0 turns the session cache and the
    /// per-session queueing off, to compare [default: as `serve`, 4096].
    #[arg(long)]
    session_cache: Option<usize>,
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let args = match args.scenario {
        Scenario::Ingest(args) => args,
        Scenario::Fanout(args) => return bench::fanout::run(args),
        Scenario::Lifecycle(args) => return lifecycle(args),
    };
    let mut plan = if args.quick {
        IngestPlan::quick()
    } else {
        IngestPlan::full()
    };
    if let Some(n) = args.webhooks {
        anyhow::ensure!(
            (1..=1_000_000).contains(&n),
            "--webhooks must be 1..=1000000"
        );
        plan.webhooks = n;
    }
    if let Some(c) = args.connections {
        anyhow::ensure!((1..=1024).contains(&c), "--connections must be 1..=1024");
        plan.connections = c;
    }
    if let Some(secs) = args.time_limit_secs {
        plan.time_limit = time_limit(secs)?;
    }
    if let Some(n) = args.session_cache {
        plan.session_cache = n;
    }
    if let Some(url) = &args.database_url {
        anyhow::ensure!(
            ringmaster_server::config::is_postgres(url),
            "--database-url must be a postgres:// URL"
        );
    }
    let report = runtime()?.block_on(bench::ingest(plan, args.database_url.as_deref()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::table(&report));
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn time_limit(secs: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (1..=3600).contains(&secs),
        "--time-limit-secs must be 1..=3600"
    );
    Ok(Duration::from_secs(secs))
}

fn lifecycle(args: LifecycleArgs) -> anyhow::Result<()> {
    use bench::lifecycle::{self, LifecyclePlan};
    let mut plan = if args.quick {
        LifecyclePlan::quick()
    } else {
        LifecyclePlan::full()
    };
    if let Some(n) = args.calls {
        anyhow::ensure!((1..=100_000).contains(&n), "--calls must be 1..=100000");
        plan.calls = n;
    }
    if let Some(r) = args.answer_rate {
        anyhow::ensure!((1..=10_000).contains(&r), "--answer-rate must be 1..=10000");
        plan.answer_rate = r;
    }
    if let Some(n) = args.commits {
        anyhow::ensure!((1..=100_000).contains(&n), "--commits must be 1..=100000");
        plan.commits = n;
    }
    if let Some(secs) = args.time_limit_secs {
        plan.time_limit = time_limit(secs)?;
    }
    plan.push = args.push;
    if args.push_outage {
        let report = runtime()?.block_on(lifecycle::push_outage(plan))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", lifecycle::outage_table(&report));
        }
        return Ok(());
    }
    let report = runtime()?.block_on(lifecycle::lifecycle(plan))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", lifecycle::table(&report));
    }
    Ok(())
}
