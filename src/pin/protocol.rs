//! PIN/UV auth protocols one and two (CTAP 2.1 §6.5.6, §6.5.7), byte-exact:
//! ECDH on P-256 with the platform's key; protocol 1 derives SHA-256(Z) and uses
//! AES-256-CBC with a zero IV and HMAC-SHA-256 truncated to 16 bytes; protocol 2 derives
//! an HMAC key and an AES key with HKDF-SHA-256, uses a random IV sent in front of the
//! ciphertext, and the full 32-byte HMAC. No padding: every plaintext is whole blocks.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use ciborium::Value;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::{random_bytes, sha256};

type HmacSha256 = hmac::Hmac<Sha256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// A PIN/UV auth protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    One,
    Two,
}

impl Protocol {
    /// The pinUvAuthProtocol parameter value; `None` if unsupported.
    pub fn from_param(v: u64) -> Option<Protocol> {
        match v {
            1 => Some(Protocol::One),
            2 => Some(Protocol::Two),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Protocol::One => 0,
            Protocol::Two => 1,
        }
    }

    /// authenticate(key, message) → signature (§6.5.6: 16 bytes; §6.5.7: 32 bytes, with
    /// only the first 32 bytes of a longer key as the HMAC key).
    pub fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = &key[..key.len().min(32)];
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        match self {
            Protocol::One => tag[..16].to_vec(),
            Protocol::Two => tag.to_vec(),
        }
    }

    /// verify(key, message, signature), in constant time.
    pub fn verify(self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let expected_len = match self {
            Protocol::One => 16,
            Protocol::Two => 32,
        };
        if signature.len() != expected_len {
            return false;
        }
        let key = &key[..key.len().min(32)];
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
            return false;
        };
        mac.update(message);
        mac.verify_truncated_left(signature).is_ok()
    }

    /// encrypt(sharedSecret, plaintext); the plaintext is a whole number of blocks.
    pub fn encrypt(self, shared: &SharedSecret, plaintext: &[u8]) -> Vec<u8> {
        let (iv, prefix) = match self {
            Protocol::One => ([0u8; 16], false),
            Protocol::Two => (random_bytes::<16>(), true),
        };
        let mut out = vec![0u8; plaintext.len()];
        let enc = Aes256CbcEnc::new(shared.aes_key().into(), &iv.into());
        let n = enc
            .encrypt_padded_b2b::<NoPadding>(plaintext, &mut out)
            .map(|c| c.len())
            .unwrap_or(0);
        out.truncate(n);
        if prefix {
            let mut v = iv.to_vec();
            v.extend_from_slice(&out);
            v
        } else {
            out
        }
    }

    /// decrypt(sharedSecret, ciphertext); `None` if it is not whole blocks (after the IV).
    pub fn decrypt(self, shared: &SharedSecret, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (iv, ct): ([u8; 16], &[u8]) = match self {
            Protocol::One => ([0u8; 16], ciphertext),
            Protocol::Two => {
                if ciphertext.len() < 16 {
                    return None;
                }
                (ciphertext[..16].try_into().ok()?, &ciphertext[16..])
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return None;
        }
        let mut out = Zeroizing::new(vec![0u8; ct.len()]);
        let dec = Aes256CbcDec::new(shared.aes_key().into(), &iv.into());
        let n = dec
            .decrypt_padded_b2b::<NoPadding>(ct, &mut out)
            .ok()?
            .len();
        out.truncate(n);
        Some(out)
    }
}

/// The secret shared with the platform for one request. Protocol 1: SHA-256(Z), used as
/// both HMAC and AES key. Protocol 2: HMAC key ‖ AES key (64 bytes).
pub struct SharedSecret {
    /// Protocol 1: SHA-256(Z). Protocol 2: the HMAC key.
    hmac: Zeroizing<[u8; 32]>,
    /// Protocol 2 only: the AES key.
    aes: Option<Zeroizing<[u8; 32]>>,
}

impl SharedSecret {
    /// The HMAC key part (what `authenticate` / `verify` use).
    pub fn hmac_key(&self) -> &[u8] {
        &*self.hmac
    }

    fn aes_key(&self) -> &[u8; 32] {
        match &self.aes {
            Some(k) => k,
            None => &self.hmac,
        }
    }

    /// The whole secret as the spec defines it (32 or 64 bytes).
    pub fn bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(self.hmac.to_vec());
        if let Some(a) = &self.aes {
            v.extend_from_slice(&**a);
        }
        v
    }
}

/// The authenticator's key agreement key of one protocol (§6.5.6 `initialize` /
/// `regenerate`). On AWS-LC, like the ES256 keys (`crypto::es256` says why): a
/// variable-base ECDH costs ~0.3 ms with p256 0.14. The public point is computed once.
pub struct KeyAgreement {
    /// `None` only if AWS-LC failed inside when the key was made: then every
    /// decapsulation fails (the client sees an error), nothing panics.
    key: Option<agreement::PrivateKey>,
    /// Uncompressed SEC1: 0x04 ‖ x ‖ y.
    public: [u8; 65],
}

impl Default for KeyAgreement {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyAgreement {
    pub fn new() -> KeyAgreement {
        Self::from_key(agreement::PrivateKey::generate(&ECDH_P256).ok())
    }

    /// For fixtures: a key from its 32-byte scalar.
    pub fn from_scalar(scalar: &[u8; 32]) -> Option<KeyAgreement> {
        let key = agreement::PrivateKey::from_private_key(&ECDH_P256, scalar).ok()?;
        Some(Self::from_key(Some(key))).filter(|k| k.key.is_some())
    }

    fn from_key(key: Option<agreement::PrivateKey>) -> KeyAgreement {
        let mut public = [0u8; 65];
        let key = key.filter(|k| match k.compute_public_key() {
            Ok(p) if p.as_ref().len() == public.len() => {
                public.copy_from_slice(p.as_ref());
                true
            }
            _ => false,
        });
        KeyAgreement { key, public }
    }

    /// getPublicKey(): COSE_Key {1: 2 (EC2), 3: -25 (ECDH-ES+HKDF-256), -1: 1, -2: x, -3: y}.
    pub fn public_cose(&self) -> Value {
        let b = &self.public;
        crate::crypto::cose::ec2_p256(-25, &b[1..33], &b[33..65])
    }

    /// decapsulate(peerCoseKey): ECDH with the platform's key, then the protocol's KDF.
    /// `None` if the COSE key is malformed or not a point on P-256.
    pub fn decapsulate(&self, protocol: Protocol, peer: &Value) -> Option<SharedSecret> {
        let m = peer.as_map()?;
        let get = |k: i64| {
            m.iter()
                .find(|(key, _)| key.as_integer().map(i128::from) == Some(k.into()))
                .map(|(_, v)| v)
        };
        // kty EC2 and crv P-256 are required; alg is what the platform says it used.
        if get(1)?.as_integer().map(i128::from) != Some(2)
            || get(-1)?.as_integer().map(i128::from) != Some(1)
        {
            return None;
        }
        let x = get(-2)?.as_bytes()?;
        let y = get(-3)?.as_bytes()?;
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 4;
        sec1[1..33].copy_from_slice(x);
        sec1[33..].copy_from_slice(y);
        // AWS-LC refuses a point that is not on the curve.
        let peer = UnparsedPublicKey::new(&ECDH_P256, &sec1[..]);
        agreement::agree(self.key.as_ref()?, peer, (), |z| Ok(Self::kdf(protocol, z))).ok()?
    }

    /// The protocol's KDF over the ECDH x-coordinate Z (§6.5.6, §6.5.7).
    fn kdf(protocol: Protocol, z: &[u8]) -> Option<SharedSecret> {
        match protocol {
            Protocol::One => Some(SharedSecret {
                hmac: Zeroizing::new(sha256(z)),
                aes: None,
            }),
            Protocol::Two => {
                let hk = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                let mut hmac = Zeroizing::new([0u8; 32]);
                let mut aes = Zeroizing::new([0u8; 32]);
                hk.expand(b"CTAP2 HMAC key", &mut *hmac).ok()?;
                hk.expand(b"CTAP2 AES key", &mut *aes).ok()?;
                Some(SharedSecret {
                    hmac,
                    aes: Some(aes),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &serde_json::Value, k: &str) -> Vec<u8> {
        hex::decode(v[k].as_str().unwrap()).unwrap()
    }

    /// Cross-check with python-fido2's PinProtocolV1/V2 (fixtures/make_fixtures.py).
    #[test]
    fn matches_python_fido2_vectors() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/pin/protocol-vectors.json"
        ))
        .unwrap();
        let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(vectors.len(), 2);
        for v in vectors {
            let protocol = Protocol::from_param(v["protocol"].as_u64().unwrap()).unwrap();
            let scalar: [u8; 32] = h(&v, "authenticator_scalar").try_into().unwrap();
            let ka = KeyAgreement::from_scalar(&scalar).unwrap();
            let peer =
                crate::crypto::cose::ec2_p256(-25, &h(&v, "platform_x"), &h(&v, "platform_y"));
            let shared = ka.decapsulate(protocol, &peer).unwrap();
            assert_eq!(
                shared.bytes().as_slice(),
                h(&v, "shared_secret").as_slice(),
                "{protocol:?} shared secret"
            );
            let pt = shared_decrypt(protocol, &shared, &h(&v, "ciphertext"));
            assert_eq!(pt, h(&v, "plaintext"), "{protocol:?} decrypt");
            assert_eq!(
                protocol.authenticate(shared.hmac_key(), &h(&v, "message")),
                h(&v, "authenticate")
            );
            assert!(protocol.verify(shared.hmac_key(), &h(&v, "message"), &h(&v, "authenticate")));
            // Our encryption: protocol 1 is deterministic (zero IV) and must match python's.
            let ct = protocol.encrypt(&shared, &h(&v, "plaintext"));
            if protocol == Protocol::One {
                assert_eq!(ct, h(&v, "ciphertext"));
            } else {
                assert_eq!(ct.len(), 16 + 64);
            }
            assert_eq!(shared_decrypt(protocol, &shared, &ct), h(&v, "plaintext"));
        }
    }

    fn shared_decrypt(p: Protocol, s: &SharedSecret, ct: &[u8]) -> Vec<u8> {
        p.decrypt(s, ct).unwrap().to_vec()
    }

    #[test]
    fn malformed_inputs_are_refused() {
        let ka = KeyAgreement::new();
        let own = ka.public_cose();
        assert!(ka.decapsulate(Protocol::Two, &own).is_some());
        // Not a point on the curve.
        let bad = crate::crypto::cose::ec2_p256(-25, &[1u8; 32], &[2u8; 32]);
        assert!(ka.decapsulate(Protocol::One, &bad).is_none());
        assert!(
            ka.decapsulate(Protocol::One, &Value::Integer(1.into()))
                .is_none()
        );
        let s = ka.decapsulate(Protocol::Two, &own).unwrap();
        assert!(Protocol::Two.decrypt(&s, &[0u8; 20]).is_none());
        assert!(Protocol::Two.decrypt(&s, &[0u8; 16]).is_none());
        assert!(Protocol::One.decrypt(&s, &[0u8; 15]).is_none());
        assert!(
            !Protocol::One.verify(s.hmac_key(), b"m", &[0u8; 32]),
            "protocol 1 tags are 16 bytes"
        );
    }
}
