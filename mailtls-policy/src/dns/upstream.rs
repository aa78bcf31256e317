//! How queries leave for the upstream name server: hickory's Tokio
//! connections, wrapped to set header bits hickory-resolver 0.25 has no
//! option for.
//!
//! - CD (checking disabled, RFC 4035 §3.2.2): where we validate ourselves
//!   behind a validating resolver, CD asks it to hand over data it thinks
//!   bogus instead of SERVFAIL, so our own validator gives the verdict
//!   (bogus) rather than a transient-looking failure.
//! - AD (RFC 6840 §5.7): in the AD-trusting mode the query sets AD to ask
//!   for the resolver's verdict, and each answer's records are marked
//!   secure when the answer carries AD and insecure when it does not.

use std::future::Future;
use std::io;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hickory_proto::ProtoError;
use hickory_proto::dnssec::Proof;
use hickory_proto::xfer::{DnsHandle, DnsRequest, DnsResponse};
use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::name_server::{ConnectionProvider, TokioConnectionProvider};

/// Which header bits the wrapper sets and reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HeaderBits {
    /// Set CD on every query.
    pub(super) checking_disabled: bool,
    /// Set AD on every query and turn the AD bit of each answer into the
    /// proof of its records.
    pub(super) trust_ad: bool,
}

/// A [`ConnectionProvider`] over hickory's Tokio one that sets [`HeaderBits`].
#[derive(Clone, Default)]
pub(super) struct UpstreamConnector {
    inner: TokioConnectionProvider,
    bits: HeaderBits,
}

impl UpstreamConnector {
    pub(super) fn new(bits: HeaderBits) -> Self {
        UpstreamConnector {
            inner: TokioConnectionProvider::default(),
            bits,
        }
    }
}

type InnerConn = <TokioConnectionProvider as ConnectionProvider>::Conn;

impl ConnectionProvider for UpstreamConnector {
    type Conn = UpstreamConn;
    type FutureConn = Pin<Box<dyn Future<Output = Result<UpstreamConn, ProtoError>> + Send>>;
    type RuntimeProvider = <TokioConnectionProvider as ConnectionProvider>::RuntimeProvider;

    fn new_connection(
        &self,
        config: &NameServerConfig,
        options: &ResolverOpts,
    ) -> Result<Self::FutureConn, io::Error> {
        let connecting = self.inner.new_connection(config, options)?;
        let bits = self.bits;
        Ok(Box::pin(async move {
            Ok(UpstreamConn {
                inner: connecting.await?,
                bits,
            })
        }))
    }
}

/// One connection of an [`UpstreamConnector`].
#[derive(Clone)]
pub(super) struct UpstreamConn {
    inner: InnerConn,
    bits: HeaderBits,
}

impl DnsHandle for UpstreamConn {
    type Response = BoxStream<'static, Result<DnsResponse, ProtoError>>;

    fn is_verifying_dnssec(&self) -> bool {
        self.inner.is_verifying_dnssec()
    }

    fn is_using_edns(&self) -> bool {
        self.inner.is_using_edns()
    }

    fn send<R: Into<DnsRequest> + Unpin + Send + 'static>(&self, request: R) -> Self::Response {
        let mut request: DnsRequest = request.into();
        if self.bits.checking_disabled {
            request.set_checking_disabled(true);
        }
        if self.bits.trust_ad {
            request.set_authentic_data(true);
            self.inner
                .send(request)
                .map(|r| r.map(proof_from_ad))
                .boxed()
        } else {
            self.inner.send(request).boxed()
        }
    }
}

/// Marks every record of an answer with the upstream's verdict: secure when
/// the header has AD, insecure otherwise (a strict validating resolver
/// answers bogus data with SERVFAIL, so what arrives without AD is data it
/// found unsigned).
fn proof_from_ad(mut response: DnsResponse) -> DnsResponse {
    let proof = if response.authentic_data() {
        Proof::Secure
    } else {
        Proof::Insecure
    };
    for record in response.answers_mut() {
        record.set_proof(proof);
    }
    for record in response.name_servers_mut() {
        record.set_proof(proof);
    }
    response
}
