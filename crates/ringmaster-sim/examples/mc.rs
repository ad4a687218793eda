fn main() {
    for (k, c) in [(2u8, 0u8), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2)] {
        let t = std::time::Instant::now();
        let r = ringmaster_sim::model::check(k as usize, c, true).unwrap();
        let m = ringmaster_sim::model::check(k as usize, c, false).unwrap();
        println!("K={k} crashes={c}: {} states ({:?}), holds={} | without CAS: {} states, fails={:?}", r.unique_states, t.elapsed(), r.counterexamples.is_empty(), m.unique_states, m.counterexamples.iter().map(|c| &c.0).collect::<Vec<_>>());
    }
}
