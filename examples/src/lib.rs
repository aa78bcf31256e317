#![doc = include_str!("../README.md")]

pub mod auth;
pub mod certs;
pub mod config;
pub mod imap;
pub mod mta_sts_publish;
pub mod pop3;
pub mod requiretls_mark;
pub mod server;
pub mod smtp;
pub mod spool;
mod stream;
pub mod tls;
pub mod web;

pub use config::{Config, ConfigError, MailListener};
pub use server::{ListenerAddrs, ListenerInfo, RunningServer, Server, ServerError, ShutdownHandle};
