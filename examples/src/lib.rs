//! Runnable examples: `cargo run -p reqmod-examples --example <name>`.
