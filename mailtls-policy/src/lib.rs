#![doc = include_str!("../README.md")]

pub mod dane;
pub mod dns;
pub mod mta_sts;
pub mod own_domain;
pub mod plan;
pub mod requiretls;
pub mod result_type;
pub mod tlsrpt;
pub mod verifier;
