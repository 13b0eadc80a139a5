//! `cargo xtask`: project automation (skeleton).
fn main() {}
