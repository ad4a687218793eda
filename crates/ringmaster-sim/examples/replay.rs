//! Prints the full trace of one random run: `cargo run -p ringmaster-sim --example replay --
//! SEED [FAULT_MIX]` (the mix defaults to `default`, as in `ringmaster simulate`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(seed) = args.get(1).and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: replay SEED [FAULT_MIX]");
        std::process::exit(2);
    };
    let mix = match ringmaster_sim::FaultMix::parse(args.get(2).map_or("default", String::as_str)) {
        Ok(mix) => mix,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let world = ringmaster_sim::World::new(ringmaster_sim::runner::random_plan(seed, &mix)).run();
    for line in world.trace() {
        println!("{line}");
    }
    for v in world.violations() {
        println!("violation {}: {}", v.invariant, v.detail);
    }
}
