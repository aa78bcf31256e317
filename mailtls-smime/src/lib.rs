#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod algorithms;
mod ber;
mod cert;
mod cosign;
mod decrypt;
mod ecdh;
mod encrypt;
mod envelope;
mod error;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
mod key;
mod mime;
mod open;
mod sign;
mod stream;
pub mod verify;

pub use algorithms::{ContentEncryption, DigestAlgorithm, KeyManagement, SmimeCapabilities};
pub use cert::Certificate;
pub use decrypt::{ContentCipher, Decrypted, Decryptor};
pub use encrypt::Encryptor;
pub use error::{Error, Result};
pub use key::PrivateKey;
pub use open::{Opened, OpenedLayer, open};
pub use sign::{SignatureForm, Signer};
pub use verify::{
    Check, Failure, SignerReport, Verdict, Verified, Verifier, VerifyReport, WeakAlgorithm,
};
