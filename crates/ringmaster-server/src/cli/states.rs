//! `ringmaster states`: the canonical machine as JSON, Graphviz or Markdown.

use clap::Args;

/// Output format flags for `ringmaster states`.
#[derive(Args)]
pub struct StatesArgs {
    /// Print JSON: states, transitions and SDK maps.
    #[arg(long, group = "fmt")]
    pub json: bool,
    /// Print a Graphviz diagram.
    #[arg(long, group = "fmt")]
    pub dot: bool,
    /// Print the transition table as Markdown.
    #[arg(long, group = "fmt")]
    pub markdown: bool,
}

/// Runs the subcommand.
pub fn run(_args: StatesArgs) -> anyhow::Result<()> {
    anyhow::bail!("the state table is not built yet")
}
