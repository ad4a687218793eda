//! One module per subcommand.

pub mod bench;
pub mod emulator;
pub mod simulate;
pub mod states;
