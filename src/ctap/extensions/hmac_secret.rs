//! hmac-secret (CTAP 2.1 §12.5) and hmac-secret-mc (CTAP 2.2 §12.8): a credential's two
//! secrets, CredRandomWithUV and CredRandomWithoutUV, and HMAC-SHA-256 of one or two
//! 32-byte salts under the one the request's UV flag picks, sent in and out encrypted
//! with a PIN/UV auth protocol's shared secret. WebAuthn's `prf` extension is built on
//! it (browsers hash the RP's inputs into the salts).
//!
//! vkey does not store CredRandom: both are derived from the credential's sealed secret
//! (its private key) with HKDF-SHA-256 under distinct info strings. So they live where
//! the private key lives — inside a non-discoverable credential's ID, with a stored or
//! imported credential — and a credential made with hmac-secret gets them for free.

use ciborium::Value;
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::ctap::cbor::read;
use crate::ctap::status::{CtapResult, StatusCode};
use crate::pin::{KeyAgreement, Protocol, SharedSecret};

pub const NAME: &str = "hmac-secret";
/// CTAP 2.2: the same input at makeCredential, so the platform gets PRF results at once.
pub const MC_NAME: &str = "hmac-secret-mc";

/// One salt is 32 bytes; a request carries one or two.
pub const SALT_LEN: usize = 32;

const INFO_WITH_UV: &[u8] = b"vkey hmac-secret CredRandomWithUV";
const INFO_WITHOUT_UV: &[u8] = b"vkey hmac-secret CredRandomWithoutUV";

/// CredRandomWithUV or CredRandomWithoutUV of the credential whose secret is `secret`.
pub fn cred_random(secret: &[u8; 32], uv: bool) -> Zeroizing<[u8; 32]> {
    crate::crypto::hkdf_sha256(secret, if uv { INFO_WITH_UV } else { INFO_WITHOUT_UV })
}

/// The makeCredential input: `true` asks for the credential to get CredRandom.
pub fn parse_create(v: Value) -> CtapResult<bool> {
    read::boolean(v)
}

/// The getAssertion input (and hmac-secret-mc's): {1: keyAgreement, 2: saltEnc,
/// 3: saltAuth, 4: pinUvAuthProtocol}, as sent.
pub struct HmacSecretInput {
    key_agreement: Value,
    salt_enc: Vec<u8>,
    salt_auth: Vec<u8>,
    pin_uv_auth_protocol: Option<u64>,
}

impl HmacSecretInput {
    /// Not a map, or a member of the wrong type: CBOR_UNEXPECTED_TYPE; keyAgreement,
    /// saltEnc or saltAuth missing: MISSING_PARAMETER. Unknown members are ignored.
    pub fn parse(v: Value) -> CtapResult<HmacSecretInput> {
        let (mut key_agreement, mut salt_enc, mut salt_auth, mut protocol) =
            (None, None, None, None);
        for (k, v) in read::map(v)? {
            match read::int(k)? {
                1 => key_agreement = Some(Value::Map(read::map(v)?)),
                2 => salt_enc = Some(read::bytes(v)?),
                3 => salt_auth = Some(read::bytes(v)?),
                4 => protocol = Some(read::unsigned(v)?),
                _ => {}
            }
        }
        Ok(HmacSecretInput {
            key_agreement: key_agreement.ok_or(StatusCode::MissingParameter)?,
            salt_enc: salt_enc.ok_or(StatusCode::MissingParameter)?,
            salt_auth: salt_auth.ok_or(StatusCode::MissingParameter)?,
            pin_uv_auth_protocol: protocol,
        })
    }

    /// The authenticator's side of §12.5 up to the salts: the protocol (absent means 1;
    /// unsupported: INVALID_PARAMETER), the shared secret from keyAgreement (a bad key:
    /// INVALID_PARAMETER, as in §6.5.6 decapsulate), verify(sharedSecret, saltEnc,
    /// saltAuth) (PIN_AUTH_INVALID), decrypt(sharedSecret, saltEnc) to 32 or 64 bytes
    /// (else INVALID_PARAMETER).
    pub fn open(&self, keys: &[KeyAgreement; 2]) -> CtapResult<Salts> {
        let protocol = match self.pin_uv_auth_protocol {
            None => Protocol::One,
            Some(p) => Protocol::from_param(p).ok_or(StatusCode::InvalidParameter)?,
        };
        let shared = keys[protocol.index()]
            .decapsulate(protocol, &self.key_agreement)
            .ok_or(StatusCode::InvalidParameter)?;
        if !protocol.verify(shared.hmac_key(), &self.salt_enc, &self.salt_auth) {
            return Err(StatusCode::PinAuthInvalid);
        }
        let salts = protocol
            .decrypt(&shared, &self.salt_enc)
            .filter(|s| s.len() == SALT_LEN || s.len() == 2 * SALT_LEN)
            .ok_or(StatusCode::InvalidParameter)?;
        Ok(Salts {
            protocol,
            shared,
            salts,
        })
    }
}

/// The salts of one request, with the shared secret their outputs are encrypted under.
/// getNextAssertion keeps them for the other credentials.
pub struct Salts {
    protocol: Protocol,
    shared: SharedSecret,
    /// salt1, or salt1 ‖ salt2.
    salts: Zeroizing<Vec<u8>>,
}

impl Salts {
    /// The extension output: encrypt(sharedSecret, output1 [‖ output2]) with outputN =
    /// HMAC-SHA-256(CredRandom, saltN).
    pub fn evaluate(&self, cred_random: &[u8; 32]) -> Vec<u8> {
        let mut outputs = Zeroizing::new(Vec::with_capacity(self.salts.len()));
        for salt in self.salts.chunks_exact(SALT_LEN) {
            let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(cred_random)
            else {
                continue; // HMAC takes keys of any length
            };
            mac.update(salt);
            outputs.extend_from_slice(&mac.finalize().into_bytes());
        }
        self.protocol.encrypt(&self.shared, &outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Value {
        Value::Integer(i.into())
    }

    /// A platform's request for `salts` under `protocol`, against `ours`.
    fn request(ours: &KeyAgreement, protocol: Protocol, salts: &[u8]) -> (Value, SharedSecret) {
        let platform = KeyAgreement::new();
        let shared = platform.decapsulate(protocol, &ours.public_cose()).unwrap();
        let enc = protocol.encrypt(&shared, salts);
        let auth = protocol.authenticate(shared.hmac_key(), &enc);
        let mut m = vec![
            (int(1), platform.public_cose()),
            (int(2), Value::Bytes(enc)),
            (int(3), Value::Bytes(auth)),
        ];
        if protocol == Protocol::Two {
            m.push((int(4), int(2)));
        }
        (Value::Map(m), shared)
    }

    #[test]
    fn outputs_are_hmacs_of_the_salts_under_cred_random() {
        let keys = [KeyAgreement::new(), KeyAgreement::new()];
        let secret = [9u8; 32];
        for protocol in [Protocol::One, Protocol::Two] {
            let salts: Vec<u8> = (0..64).collect();
            let (input, shared) = request(&keys[protocol.index()], protocol, &salts);
            let opened = HmacSecretInput::parse(input).unwrap().open(&keys).unwrap();
            let cr = cred_random(&secret, true);
            let out = protocol.decrypt(&shared, &opened.evaluate(&cr)).unwrap();
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&*cr).unwrap();
            mac.update(&salts[32..]);
            assert_eq!(&out[32..], mac.finalize().into_bytes().as_slice());
            assert_eq!(out.len(), 64);
        }
        assert_ne!(*cred_random(&secret, true), *cred_random(&secret, false));
        assert_ne!(*cred_random(&secret, true), *cred_random(&[8u8; 32], true));
    }

    #[test]
    fn every_error_branch_has_its_status() {
        let keys = [KeyAgreement::new(), KeyAgreement::new()];
        let p = |v: Value| HmacSecretInput::parse(v).and_then(|i| i.open(&keys).map(|_| ()));
        let (good, _) = request(&keys[1], Protocol::Two, &[1u8; 32]);
        let with = |key: i64, value: Option<Value>| {
            let mut m = good.clone().into_map().unwrap();
            m.retain(|(k, _)| k != &int(key));
            if let Some(v) = value {
                m.push((int(key), v));
            }
            Value::Map(m)
        };
        assert_eq!(p(good.clone()), Ok(()));
        assert_eq!(p(int(1)), Err(StatusCode::CborUnexpectedType));
        assert_eq!(p(with(1, None)), Err(StatusCode::MissingParameter));
        assert_eq!(p(with(2, None)), Err(StatusCode::MissingParameter));
        assert_eq!(p(with(3, None)), Err(StatusCode::MissingParameter));
        assert_eq!(
            p(with(2, Some(int(0)))),
            Err(StatusCode::CborUnexpectedType)
        );
        assert_eq!(p(with(4, Some(int(3)))), Err(StatusCode::InvalidParameter));
        // Absent protocol means 1: a protocol-2 request then fails its saltAuth.
        assert_eq!(p(with(4, None)), Err(StatusCode::PinAuthInvalid));
        assert_eq!(
            p(with(3, Some(Value::Bytes(vec![0; 32])))),
            Err(StatusCode::PinAuthInvalid)
        );
        let bad_key = crate::crypto::cose::ec2_p256(-25, &[1u8; 32], &[2u8; 32]);
        assert_eq!(p(with(1, Some(bad_key))), Err(StatusCode::InvalidParameter));
        for len in [16, 48, 96] {
            let (input, _) = request(&keys[1], Protocol::Two, &vec![7u8; len]);
            assert_eq!(
                p(input),
                Err(StatusCode::InvalidParameter),
                "{len}-byte salts"
            );
        }
    }
}
