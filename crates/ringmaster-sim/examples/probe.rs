use ringmaster_sim::{run_batch, FaultMix};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let mix = FaultMix::parse(args.get(2).map(String::as_str).unwrap_or("default")).unwrap();
    let t = std::time::Instant::now();
    let b = run_batch(1, runs, &mix, 2, |_, _| {});
    eprintln!("{} runs in {:?}, {} violations, conflicts {}, crashes {}", b.runs(), t.elapsed(), b.violations().len(), b.cas_conflicts, b.node_crashes);
    let mut by: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for v in b.violations() { let e = by.entry(v.invariant.clone()).or_insert((0, v.seed)); e.0 += 1; }
    eprintln!("{by:?}");
    for v in b.violations().iter().take(1) { eprintln!("seed {} {}: {}\n{}", v.seed, v.invariant, v.detail, v.trace.join("\n")); }
    eprintln!("{:?}", b.latency_table());
}
