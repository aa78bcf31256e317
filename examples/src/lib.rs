#![doc = include_str!("../README.md")]

pub mod accept;
pub mod acme_run;
pub mod auth;
pub mod certs;
pub mod config;
pub mod imap;
pub mod mta_sts_publish;
pub mod outbound;
pub mod pop3;
pub mod reload;
pub mod requiretls_mark;
pub mod server;
pub mod smime_path;
pub mod smtp;
pub mod spool;
pub mod status;
pub mod store;
mod stream;
pub mod tls;
pub mod tlsrpt_run;
pub mod web;

pub use config::{Config, ConfigError, MailListener};
pub use reload::ReloadReport;
pub use server::{ListenerAddrs, ListenerInfo, RunningServer, Server, ServerError, ShutdownHandle};
