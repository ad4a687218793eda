//! One module per subcommand.

pub mod emulator;
pub mod states;
