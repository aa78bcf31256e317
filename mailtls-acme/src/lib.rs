#![doc = include_str!("../README.md")]

pub mod account;
pub mod client;
pub mod error;
pub mod key;
pub mod order;
pub mod renewal;
pub mod solver;
pub mod storage;
pub mod types;

pub use account::{Account, ExternalAccountBinding, NewAccountOptions};
pub use client::{AcmeClient, ClientConfig};
pub use error::{AcmeError, ErrorClass, Problem};
pub use key::{AccountKey, SigningAlgorithm};
pub use order::{CertificateRequest, IssuedCertificate, OrderJournal, PendingOrder, PollPolicy};
pub use renewal::{ManagedCertificate, RenewalHooks, RenewalManager, RetryPolicy};
pub use solver::{ChallengeContext, ChallengeSolver};
pub use storage::{FileStorage, Storage};
