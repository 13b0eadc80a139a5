//! The `magseg` command-line program (skeleton; subcommands arrive with their issues).
fn main() {}
