//! The quick start in README.md and in the crate docs (`core/src/lib.rs`) is
//! exactly the crate `examples/quickstart`, which `cargo xtask test` builds
//! and links for riscv64: what a reader copies is what CI builds.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The body of the first fenced block after `heading` whose opening fence is
/// `fence` (e.g. "```rust"), or `None`.
fn block_after(text: &str, heading: &str, fence: &str) -> Option<String> {
    let after = &text[text.find(heading)? + heading.len()..];
    let mut lines = after.lines();
    lines.by_ref().find(|l| l.trim_end() == fence)?;
    let body: Vec<&str> = lines.take_while(|l| l.trim_end() != "```").collect();
    Some(body.join("\n") + "\n")
}

/// The crate docs as markdown: the `//!` lines of `core/src/lib.rs` without
/// their prefix.
fn crate_docs() -> String {
    read("core/src/lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `[dependencies]` lines between the quick-start markers of
/// `examples/quickstart/Cargo.toml`, with the in-tree path of `reqmod`
/// written as the published version a reader uses.
fn quickstart_dependencies() -> String {
    let toml = read("examples/quickstart/Cargo.toml");
    let start = toml
        .find("# quick start: dependencies\n")
        .expect("marker in examples/quickstart/Cargo.toml");
    let body = &toml[start..];
    let body = &body[body.find('\n').unwrap() + 1..body.find("# end").expect("end marker")];
    let body = body.replace(r#"reqmod = { path = "../../core" }"#, r#"reqmod = "0.1""#);
    format!("[dependencies]\n{body}")
}

/// A shown `Cargo.toml` block without its comments, as the built one has none
/// on the dependency lines.
fn without_comments(toml: &str) -> String {
    toml.lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn readme_shows_the_quickstart_crate_exactly() {
    let readme = read("README.md");
    let heading = "## Quick start";
    let code = block_after(&readme, heading, "```rust").expect("README has a quick start");
    assert_eq!(code, read("examples/quickstart/src/lib.rs"));
    let deps = block_after(&readme, heading, "```toml").expect("README shows Cargo.toml lines");
    assert_eq!(without_comments(&deps), quickstart_dependencies());
}

#[test]
fn crate_docs_show_the_quickstart_crate_exactly() {
    let docs = crate_docs();
    let heading = "## Quick start";
    let code = block_after(&docs, heading, "```ignore").expect("crate docs have a quick start");
    assert_eq!(code, read("examples/quickstart/src/lib.rs"));
    let deps = block_after(&docs, heading, "```toml").expect("crate docs show Cargo.toml lines");
    assert_eq!(without_comments(&deps), quickstart_dependencies());
}
