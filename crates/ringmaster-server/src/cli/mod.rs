//! One module per subcommand.

pub mod states;
