//! One module per subcommand.

pub mod emulator;
pub mod simulate;
pub mod states;
