//! Response override bits (Chrome DevTools `WebAuthn.setResponseOverrideBits`): make
//! makeCredential and getAssertion responses wrong on purpose, so that a relying party
//! can test that it rejects them. Shared: the control interface flips them while the
//! key runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const BOGUS_SIGNATURE: u8 = 0x01;
const BAD_UV: u8 = 0x02;
const BAD_UP: u8 = 0x04;

/// The three bits; all off by default. Clones share them.
#[derive(Clone, Default)]
pub struct ResponseOverrides(Arc<AtomicU8>);

/// A snapshot of the bits, with CDP's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverrideBits {
    /// The signature (assertion, or attestation statement) does not verify.
    pub is_bogus_signature: bool,
    /// The UV flag is cleared in authenticator data.
    pub is_bad_uv: bool,
    /// The UP flag is cleared in authenticator data.
    pub is_bad_up: bool,
}

impl ResponseOverrides {
    pub fn set(&self, bits: OverrideBits) {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        let v = bit(bits.is_bogus_signature, BOGUS_SIGNATURE)
            | bit(bits.is_bad_uv, BAD_UV)
            | bit(bits.is_bad_up, BAD_UP);
        self.0.store(v, Ordering::Release);
    }

    pub fn get(&self) -> OverrideBits {
        let v = self.0.load(Ordering::Acquire);
        OverrideBits {
            is_bogus_signature: v & BOGUS_SIGNATURE != 0,
            is_bad_uv: v & BAD_UV != 0,
            is_bad_up: v & BAD_UP != 0,
        }
    }
}

impl OverrideBits {
    /// The authenticator-data flags with UV / UP cleared as asked (before signing, as
    /// Chrome does: the signature is valid over the altered data).
    pub fn flags(self, flags: u8) -> u8 {
        let mut f = flags;
        if self.is_bad_uv {
            f &= !super::auth_data::FLAG_UV;
        }
        if self.is_bad_up {
            f &= !super::auth_data::FLAG_UP;
        }
        f
    }

    /// A signature that does not verify: the real one with its last byte changed (an
    /// ES256 DER signature stays well-formed DER, an Ed25519 one stays 64 bytes).
    pub fn signature(self, mut sig: Vec<u8>) -> Vec<u8> {
        if self.is_bogus_signature
            && let Some(last) = sig.last_mut()
        {
            *last ^= 0x5a;
        }
        sig
    }
}
