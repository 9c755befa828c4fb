//! Compile-time rules: every rule has a failing case with a checked-in `.stderr`.
//!
//! The `.stderr` files are produced by the toolchain pinned in `rust-toolchain.toml`;
//! other compilers word their errors differently, so the suite only runs on it.
//! Regenerate with `TRYBUILD=overwrite` and read every diff.

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files belong to the pinned toolchain"
)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/*/pass/*.rs");
    t.compile_fail("ui/*/fail/*.rs");
}
