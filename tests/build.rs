//! Postgres tests run when `HITL_TEST_POSTGRES_URL` is set at build time; otherwise
//! they are compiled as ignored, with the reason, so a test run says they were skipped.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hitl_postgres)");
    println!("cargo::rerun-if-env-changed=HITL_TEST_POSTGRES_URL");
    if std::env::var("HITL_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        println!("cargo::rustc-cfg=hitl_postgres");
    }
}
