//! One module per subcommand.

pub mod bench;
pub mod emulator;
pub mod migrate;
pub mod simulate;
pub mod states;
