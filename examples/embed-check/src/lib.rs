//! The embedder manuals of the published crates, compiled as doctests of a
//! crate that depends on the packaged crates only (see Cargo.toml).

/// `mailtls-sni`: inbound TLS (SNI, hot reload, tls-alpn-01).
#[doc = include_str!("../../../target/package/mailtls-sni-0.1.0/src/manual/inbound.md")]
pub mod sni_inbound {}
