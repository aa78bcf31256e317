#![doc = include_str!("../README.md")]
// Test support: a peer that cannot start is a failed test, so the starters
// panic with a message naming what is missing instead of returning errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod knot;
pub mod pebble;
pub mod postfix;
pub mod postgres;
pub mod process;

pub use knot::Knot;
pub use pebble::{Pebble, PebbleOptions, leaf_names, plain_http_client};
pub use postfix::{Delivery, Postfix, PostfixBuilder, TlsLevel};
pub use postgres::Postgres;
pub use process::{free_port, wait_for_port};
