//! ES256 (ECDSA on P-256 with SHA-256, RFC 9053 §2.1) key pairs on AWS-LC (aws-lc-rs).
//!
//! Why not the p256 crate, which the rest of the crypto uses (ECDH, PKCS#8, the
//! attestation certificates): every makeCredential generates a key and signs, every
//! getAssertion signs, and in the server profile P-256 was 90 % of the instructions of
//! both. p256 0.14 takes ~110 µs for a k×G even with its base-point table, AWS-LC
//! ~14 µs for a key pair and ~24 µs for a signature (2-core development machine). ring
//! is as fast but cannot load a P-256 private key without its public key, which a
//! credential ID does not carry. Signatures use AWS-LC's random nonces (FIPS 186-5
//! ECDSA); a verifier cannot tell them from RFC 6979 ones.

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use zeroize::Zeroizing;

/// An ES256 key pair. AWS-LC clears the private key when it is freed.
pub struct Es256Key(EcdsaKeyPair);

/// The prime256v1 OID as the `parameters [0]` of an ECPrivateKey (RFC 5915 §3).
const P256_PARAMETERS: [u8; 12] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// AWS-LC seeds its random generator on first use: a jitter-entropy pool whose set-up
/// takes ~400 million instructions (~0.1 s) once per process. Done at start-up, so that
/// the first makeCredential does not pay for it (and does not need a keepalive).
pub fn warm_up() {
    let _ = Es256Key::generate();
}

impl Es256Key {
    /// A new random key pair; `None` only if AWS-LC fails inside (its RNG).
    pub fn generate() -> Option<Es256Key> {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .ok()
            .map(Es256Key)
    }

    /// The key whose private scalar is `secret` (big-endian); `None` if it is 0 or not
    /// below the group order. AWS-LC computes the public point (one k×G).
    pub fn from_secret(secret: &[u8; 32]) -> Option<Es256Key> {
        // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING (32 bytes),
        // parameters [0] prime256v1 } — RFC 5915 without the optional public key.
        let mut der = Zeroizing::new(Vec::with_capacity(51));
        der.extend_from_slice(&[0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20]);
        der.extend_from_slice(secret);
        der.extend_from_slice(&P256_PARAMETERS);
        EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .ok()
            .map(Es256Key)
    }

    /// The private scalar, big-endian.
    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(bin) = self.0.private_key().as_be_bytes()
            && let Some(dst) = out.get_mut(32usize.saturating_sub(bin.as_ref().len())..)
            && dst.len() == bin.as_ref().len()
        {
            dst.copy_from_slice(bin.as_ref());
        }
        out
    }

    /// The public key as an uncompressed SEC1 point: 0x04 ‖ x ‖ y.
    pub fn public_point(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        let p = self.0.public_key().as_ref();
        if p.len() == out.len() {
            out.copy_from_slice(p);
        }
        out
    }

    /// An ASN.1 DER ECDSA signature over SHA-256(`msg`); `None` only if AWS-LC fails
    /// inside.
    pub fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.0.sign(&rng, msg).ok().map(|s| s.as_ref().to_vec())
    }

    /// The same key for the p256 crate (PKCS#8 and certificates; slow: a k×G).
    pub fn to_p256(&self) -> Option<p256::ecdsa::SigningKey> {
        p256::ecdsa::SigningKey::from_slice(&*self.secret()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    fn verify(key: &Es256Key, msg: &[u8], sig: &[u8]) {
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_point()).unwrap();
        let sig = p256::ecdsa::Signature::from_der(sig).unwrap();
        vk.verify(msg, &sig).unwrap();
    }

    #[test]
    fn a_key_rebuilt_from_its_secret_is_the_same_key_and_signs_verifiably() {
        let k = Es256Key::generate().unwrap();
        let k2 = Es256Key::from_secret(&k.secret()).unwrap();
        assert_eq!(k.public_point(), k2.public_point());
        assert_eq!(k.public_point()[0], 0x04);
        verify(&k, b"hello", &k2.sign(b"hello").unwrap());
        // The p256 crate sees the same key.
        let p = k.to_p256().unwrap();
        assert_eq!(
            p.verifying_key().to_sec1_point(false).as_bytes(),
            &k.public_point()[..]
        );
    }

    #[test]
    fn secrets_with_leading_zero_bytes_roundtrip() {
        let mut s = [0u8; 32];
        s[31] = 7;
        let k = Es256Key::from_secret(&s).unwrap();
        assert_eq!(*k.secret(), s);
        verify(&k, b"m", &k.sign(b"m").unwrap());
    }

    #[test]
    fn zero_and_out_of_range_scalars_are_not_keys() {
        assert!(Es256Key::from_secret(&[0u8; 32]).is_none());
        assert!(Es256Key::from_secret(&[0xff; 32]).is_none());
    }
}
