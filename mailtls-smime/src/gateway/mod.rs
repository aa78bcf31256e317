//! Gateway rules and state: which partner certificates the gateway holds,
//! when outgoing mail is signed and encrypted, what incoming mail gets
//! decrypted, verified and marked, and which of its own keys it uses.
//!
//! The rules are decision logic over plain data; [`Gateway`] applies them
//! to message bytes with the engine (sign, encrypt, open, verify) and feeds
//! verified results back (harvesting into the [`PartnerStore`]).

mod address;
mod capabilities;
mod certificate;
mod incoming;
mod key_store;
mod keys;
mod outgoing;
mod partner_store;
mod process;
mod status;
mod storage;
mod subject;

pub use address::{Address, AddressError};
pub use capabilities::Capabilities;
pub use certificate::{CertificateError, Fingerprint, KeyUsageBits, SmimeCertificate, Unusable};
pub use incoming::{
    DecryptDecision, HeaderPrefixError, IncomingMessage, IncomingRules, SecurityResult,
    SignatureStatus, StatusHeaders, WeakSignatures,
};
pub use key_store::{KeyStore, KeyStoreError, OwnKey};
pub use keys::{KeyDirectory, KeyOwner, KeyRef};
pub use outgoing::{
    CopyPlan, EncryptDecision, EncryptTo, EncryptionPolicy, EncryptionScope, NotEncrypted,
    NotSigned, OutgoingDecision, OutgoingMessage, OutgoingPlan, OutgoingRules, RecipientMatch,
    Rejection, RelayAllowance, SenderAuth, SignDecision, SplitDecision, TrustedRelay,
};
pub use partner_store::{
    Binding, CertSource, Harvest, HarvestMode, HarvestOutcome, Listed, MIN_PREFIX, MatchedBy,
    NoCertificate, PartnerEntry, PartnerStore, PendingHarvest, RecipientCertificate, StoreError,
};
pub use process::{
    Envelope, Gateway, IncomingCopy, IncomingOutcome, IncomingSummary, OutgoingCopy,
    OutgoingOutcome, OutgoingSplitOutcome, OutgoingSummary, ProcessError,
};
pub use status::{EnhancedStatus, StatusClass};
pub use storage::{FileStorage, MemoryStorage, SnapshotStorage, StorageError, StorageFuture};
pub use subject::{
    DOMAIN_PLACEHOLDER, Mark, MarkError, SubjectMarks, decode_subject, encode_subject,
};

#[cfg(test)]
#[path = "../../tests/gateway_common/mod.rs"]
pub(crate) mod test_certs;
