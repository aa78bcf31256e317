//! The embedder manuals of the published crates, compiled as doctests of a
//! crate that depends on the packaged crates only (see Cargo.toml). The
//! S/MIME and ACME crates are built here too, from their packages, with no
//! default features, so a crate that only builds inside the workspace fails.

/// `mailtls-sni`: inbound TLS (SNI, hot reload, tls-alpn-01).
#[doc = include_str!("../../../target/package/mailtls-sni-0.1.0/src/manual/inbound.md")]
pub mod sni_inbound {}

/// `mailtls-policy`: the outbound loop (docs-only module of that crate).
#[path = "../../../target/package/mailtls-policy-0.1.0/src/manual/outbound.rs"]
pub mod policy_outbound;

/// `mailtls-policy`: seeding policies for tests (docs-only module).
#[path = "../../../target/package/mailtls-policy-0.1.0/src/manual/testing.rs"]
pub mod policy_testing;

/// The other two crates are linked so their packages are compiled.
pub use mailtls_acme as _acme;
pub use mailtls_smime as _smime;
