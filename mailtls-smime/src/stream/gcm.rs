//! AES-GCM (NIST SP 800-38D) in pieces, for streaming AuthEnvelopedData:
//! aws-lc-rs seals and opens GCM only in one call over the whole content,
//! so the content is encrypted with its streaming AES-CTR (the counter
//! starting at inc32(J0), as GCM does) and authenticated with GHASH from
//! the `ghash` crate; the tag is GHASH XOR E(K, J0). A unit test checks
//! the result against aws-lc-rs's one-shot AES-GCM.

use aws_lc_rs::cipher::{
    self, EncryptingKey, EncryptionContext, StreamingEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use ghash::GHash;
use ghash::universal_hash::{KeyInit, UniversalHash};

use crate::error::{Error, Result};

/// The GCM tag length written and accepted.
pub(crate) const TAG_LEN: usize = 16;
/// Largest content GCM allows with a 96-bit nonce: 2^32 - 2 blocks
/// (SP 800-38D section 5.2.1.1); the 32-bit counter must not wrap.
const MAX_CONTENT: u64 = ((1u64 << 32) - 2) * 16;

/// Which way the content goes through the cipher.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Seal,
    Open,
}

/// One GCM operation over content fed in pieces; no additional data.
pub(crate) struct GcmStream {
    ctr: StreamingEncryptingKey,
    ghash: GHash,
    /// Ciphertext bytes not yet hashed (fewer than one block).
    carry: Vec<u8>,
    len: u64,
    /// E(K, J0), XORed onto GHASH to make the tag.
    tag_mask: [u8; 16],
    direction: Direction,
}

fn crypto(_: aws_lc_rs::error::Unspecified) -> Error {
    Error::Crypto("AES-GCM")
}

impl GcmStream {
    /// A GCM operation under `key` (16, 24 or 32 bytes) with a 12-byte nonce.
    pub(crate) fn new(key: &[u8], nonce: &[u8], direction: Direction) -> Result<Self> {
        let alg = match key.len() {
            16 => &cipher::AES_128,
            24 => &cipher::AES_192,
            32 => &cipher::AES_256,
            _ => return Err(Error::Crypto("AES-GCM key length")),
        };
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| Error::cms("GCMParameters", "nonce is not 12 bytes"))?;
        // E(K, X) for one block X: the CTR keystream of a zero block with
        // counter block X.
        let block = |x: [u8; 16]| -> Result<[u8; 16]> {
            let k = EncryptingKey::ctr(UnboundCipherKey::new(alg, key).map_err(crypto)?)
                .map_err(crypto)?;
            let mut b = [0u8; 16];
            k.less_safe_encrypt(&mut b, EncryptionContext::Iv128(FixedLength::from(x)))
                .map_err(crypto)?;
            Ok(b)
        };
        let h = block([0u8; 16])?;
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(&nonce);
        j0[15] = 1;
        let tag_mask = block(j0)?;
        let mut first = j0;
        first[15] = 2;
        let ctr = StreamingEncryptingKey::less_safe_ctr(
            UnboundCipherKey::new(alg, key).map_err(crypto)?,
            EncryptionContext::Iv128(FixedLength::from(first)),
        )
        .map_err(crypto)?;
        Ok(Self {
            ctr,
            ghash: GHash::new(&h.into()),
            carry: Vec::with_capacity(16),
            len: 0,
            tag_mask,
            direction,
        })
    }

    /// Hashes ciphertext, whole blocks at once, keeping a partial block.
    fn hash(&mut self, ct: &[u8]) {
        hash_into(&mut self.ghash, &mut self.carry, ct);
    }

    /// Encrypts (or decrypts) `input`, appending the result to `out`.
    pub(crate) fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.len += input.len() as u64;
        if self.len > MAX_CONTENT {
            return Err(Error::Crypto("content too long for AES-GCM"));
        }
        if self.direction == Direction::Open {
            self.hash(input);
        }
        let start = out.len();
        out.resize(start + input.len() + 16, 0);
        let written = self
            .ctr
            .update(input, &mut out[start..])
            .map_err(crypto)?
            .written()
            .len();
        out.truncate(start + written);
        if self.direction == Direction::Seal {
            hash_into(&mut self.ghash, &mut self.carry, &out[start..]);
        }
        Ok(())
    }

    /// Ends the operation: any last bytes are appended to `out`, and the
    /// tag (sealing) or the tag the content should carry (opening) is
    /// returned.
    pub(crate) fn finish(self, out: &mut Vec<u8>) -> Result<[u8; TAG_LEN]> {
        let Self {
            ctr,
            mut ghash,
            mut carry,
            len,
            tag_mask,
            direction,
        } = self;
        let start = out.len();
        out.resize(start + 16, 0);
        let (_, last) = ctr.finish(&mut out[start..]).map_err(crypto)?;
        let written = last.written().len();
        out.truncate(start + written);
        // CTR keeps nothing back, so this is empty in practice.
        if written > 0 && direction == Direction::Seal {
            hash_into(&mut ghash, &mut carry, &out[start..]);
        }
        ghash.update_padded(&carry);
        // len(A) = 0 || len(C), both in bits.
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&(len * 8).to_be_bytes());
        ghash.update(&[lengths.into()]);
        let s = ghash.finalize();
        let mut tag = [0u8; TAG_LEN];
        for (i, t) in tag.iter_mut().enumerate() {
            *t = s[i] ^ tag_mask[i];
        }
        Ok(tag)
    }
}

/// Feeds ciphertext to GHASH, whole blocks at once, keeping a partial
/// block in `carry`.
fn hash_into(ghash: &mut GHash, carry: &mut Vec<u8>, mut ct: &[u8]) {
    if !carry.is_empty() {
        let take = (16 - carry.len()).min(ct.len());
        carry.extend_from_slice(&ct[..take]);
        ct = &ct[take..];
        if carry.len() < 16 {
            return;
        }
        ghash.update_padded(carry);
        carry.clear();
    }
    let whole = ct.len() / 16 * 16;
    // A multiple of the block size: update_padded pads nothing.
    ghash.update_padded(&ct[..whole]);
    carry.extend_from_slice(&ct[whole..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
    use proptest::prelude::*;

    fn pieces(data: &[u8], cuts: &[usize], f: &mut dyn FnMut(&[u8])) {
        let mut start = 0;
        for &c in cuts.iter().chain([data.len()].iter()) {
            let c = c.min(data.len()).max(start);
            f(&data[start..c]);
            start = c;
        }
    }

    proptest! {
        /// Any split of any content seals to what aws-lc-rs's one-shot
        /// AES-GCM gives, and opens back with the same tag.
        #[test]
        fn matches_one_shot_gcm(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            mut cuts in proptest::collection::vec(0usize..300, 0..6),
            key in proptest::collection::vec(any::<u8>(), 32),
            nonce in proptest::array::uniform12(any::<u8>()),
            short_key in any::<bool>(),
        ) {
            cuts.sort_unstable();
            let key = if short_key { &key[..16] } else { &key[..] };
            let alg = if short_key { &aead::AES_128_GCM } else { &aead::AES_256_GCM };
            let one = LessSafeKey::new(UnboundKey::new(alg, key).unwrap());
            let mut expected = data.clone();
            let expected_tag = one
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut expected,
                )
                .unwrap();

            let mut seal = GcmStream::new(key, &nonce, Direction::Seal).unwrap();
            let mut ct = Vec::new();
            pieces(&data, &cuts, &mut |p| seal.update(p, &mut ct).unwrap());
            let tag = seal.finish(&mut ct).unwrap();
            prop_assert_eq!(&ct, &expected);
            prop_assert_eq!(&tag[..], expected_tag.as_ref());

            let mut open = GcmStream::new(key, &nonce, Direction::Open).unwrap();
            let mut pt = Vec::new();
            pieces(&ct, &cuts, &mut |p| open.update(p, &mut pt).unwrap());
            let tag = open.finish(&mut pt).unwrap();
            prop_assert_eq!(&pt, &data);
            prop_assert_eq!(&tag[..], expected_tag.as_ref());
        }
    }
}
