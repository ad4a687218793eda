//! `docs/states.md` is generated from the table; this fails when it is stale.

use ringmaster_core::render;
use std::path::Path;

#[test]
fn docs_states_md_matches_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/states.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = render::markdown();
    assert!(
        on_disk == generated,
        "docs/states.md is stale (or missing). Regenerate it from the repository root with:\n\n    \
         cargo run -q -- states --markdown > docs/states.md\n"
    );
}
