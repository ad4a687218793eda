//! `ringmaster states`: the canonical machine as JSON, Graphviz or Markdown.

use clap::{ArgGroup, Args};
use ringmaster_core::render;
use std::io::{ErrorKind, Write};

/// Output format flags for `ringmaster states` (exactly one).
#[derive(Args)]
#[command(group(ArgGroup::new("fmt").required(true).multiple(false)))]
pub struct StatesArgs {
    /// Print JSON: states, transitions and SDK maps.
    #[arg(long, group = "fmt")]
    pub json: bool,
    /// Print a Graphviz diagram.
    #[arg(long, group = "fmt")]
    pub dot: bool,
    /// Print the transition table as Markdown (the text of docs/states.md).
    #[arg(long, group = "fmt")]
    pub markdown: bool,
    /// Print a TypeScript module: states, transitions and event payload types (the text of
    /// web/src/generated/machine.ts).
    #[arg(long, group = "fmt")]
    pub typescript: bool,
}

/// The text the chosen format prints.
pub fn render(args: &StatesArgs) -> anyhow::Result<String> {
    if args.json {
        let mut text = serde_json::to_string_pretty(&render::json())?;
        text.push('\n');
        Ok(text)
    } else if args.dot {
        Ok(render::dot())
    } else if args.typescript {
        Ok(render::typescript())
    } else {
        Ok(render::markdown())
    }
}

/// Runs the subcommand.
pub fn run(args: StatesArgs) -> anyhow::Result<()> {
    let text = render(&args)?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `ringmaster states --json | head` closing the pipe early is not an error.
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: bool, dot: bool, markdown: bool) -> StatesArgs {
        StatesArgs {
            json,
            dot,
            markdown,
            typescript: false,
        }
    }

    #[test]
    fn each_flag_selects_its_format() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&args(true, false, false)).unwrap()).unwrap();
        assert_eq!(json["states"][0], "IDLE");
        assert!(render(&args(false, true, false))
            .unwrap()
            .starts_with("digraph"));
        assert!(render(&args(false, false, true))
            .unwrap()
            .starts_with("# Canonical call states"));
    }

    /// The web console imports this module; regenerate it when the table changes.
    #[test]
    fn the_committed_typescript_module_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../web/src/generated/machine.ts");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let fresh = render(&StatesArgs {
            json: false,
            dot: false,
            markdown: false,
            typescript: true,
        })
        .unwrap();
        assert!(
            committed == fresh,
            "{} is stale: run `cargo run -q -- states --typescript > web/src/generated/machine.ts`",
            path.display()
        );
    }
}
