#![doc = include_str!("../README.md")]

pub mod account;
pub mod client;
mod crypto;
pub mod error;
pub mod http;
pub mod key;
pub mod order;
pub mod renewal;
pub mod solver;
pub mod storage;
pub mod types;

pub use account::{Account, ExternalAccountBinding, NewAccountOptions};
pub use client::{AcmeClient, ClientConfig};
pub use error::{AcmeError, ErrorClass, Problem};
pub use http::{HttpClient, HttpRequest, HttpResponse};
pub use key::{AccountKey, SigningAlgorithm};
pub use order::{CertificateRequest, IssuedCertificate, OrderJournal, PendingOrder, PollPolicy};
pub use renewal::{ManagedCertificate, RenewalHooks, RenewalManager, RetryPolicy};
pub use solver::{ChallengeContext, ChallengeSolver};
pub use storage::{FileStorage, Storage};
