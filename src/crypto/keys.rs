//! Credential key pairs (WebAuthn §5.8.5 COSEAlgorithmIdentifier): ES256 (-7) and
//! EdDSA/Ed25519 (-8). Private keys are 32 bytes each and zeroized on drop.

use ciborium::Value;
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use super::cose;

/// A signature algorithm we can create credentials with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    EdDsa,
}

impl Algorithm {
    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::EdDsa => -8,
        }
    }

    pub fn from_cose_id(id: i64) -> Option<Algorithm> {
        match id {
            -7 => Some(Algorithm::Es256),
            -8 => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    /// A one-byte tag for sealed credential IDs.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Algorithm::Es256 => 1,
            Algorithm::EdDsa => 2,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<Algorithm> {
        match t {
            1 => Some(Algorithm::Es256),
            2 => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// A credential's private key.
pub enum CredentialKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

impl CredentialKey {
    pub fn generate(alg: Algorithm) -> CredentialKey {
        let mut rng = rand::rng();
        match alg {
            Algorithm::Es256 => CredentialKey::Es256(
                <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(
                    &mut rng,
                ),
            ),
            Algorithm::EdDsa => CredentialKey::EdDsa(ed25519_dalek::SigningKey::generate(&mut rng)),
        }
    }

    /// Rebuilds a key from its 32 secret bytes; `None` if they are not a valid key.
    pub fn from_secret(alg: Algorithm, secret: &[u8; 32]) -> Option<CredentialKey> {
        match alg {
            Algorithm::Es256 => p256::ecdsa::SigningKey::from_slice(secret)
                .ok()
                .map(CredentialKey::Es256),
            Algorithm::EdDsa => Some(CredentialKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(
                secret,
            ))),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            CredentialKey::Es256(_) => Algorithm::Es256,
            CredentialKey::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// The 32 secret bytes (P-256 scalar or Ed25519 seed), zeroized when dropped.
    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        match self {
            CredentialKey::Es256(k) => {
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(&k.to_bytes());
                out
            }
            CredentialKey::EdDsa(k) => Zeroizing::new(k.to_bytes()),
        }
    }

    /// A private key from PKCS#8 DER (RFC 5958): P-256 → ES256, Ed25519 → EdDSA (what
    /// Chrome's virtual authenticator takes in `Credential.privateKey`). `None` for
    /// anything else.
    pub fn from_pkcs8_der(der: &[u8]) -> Option<CredentialKey> {
        use p256::pkcs8::DecodePrivateKey as _;
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Some(CredentialKey::Es256(k));
        }
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
            .ok()
            .map(CredentialKey::EdDsa)
    }

    /// The private key as PKCS#8 DER, zeroized when dropped.
    pub fn to_pkcs8_der(&self) -> Option<Zeroizing<Vec<u8>>> {
        use p256::pkcs8::EncodePrivateKey as _;
        let doc = match self {
            CredentialKey::Es256(k) => k.to_pkcs8_der().ok()?,
            // PKCS#8 v1 (RFC 8410 §7: the seed alone), what most tools write and read.
            CredentialKey::EdDsa(k) => {
                let bytes = ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                };
                ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&bytes).ok()?
            }
        };
        Some(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Signs `msg`: ES256 gives an ASN.1 DER ECDSA signature over SHA-256(msg), EdDSA
    /// the 64-byte Ed25519 signature (WebAuthn §6.5.5).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            CredentialKey::Es256(k) => {
                let sig: p256::ecdsa::DerSignature = p256::ecdsa::signature::Signer::sign(k, msg);
                sig.as_bytes().to_vec()
            }
            CredentialKey::EdDsa(k) => k.sign(msg).to_bytes().to_vec(),
        }
    }

    /// The public key as a COSE_Key (RFC 9053).
    pub fn cose_public_key(&self) -> Value {
        match self {
            CredentialKey::Es256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let b = point.as_bytes();
                cose::ec2_p256(-7, &b[1..33], &b[33..65])
            }
            CredentialKey::EdDsa(k) => cose::okp_ed25519(&k.verifying_key().to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_roundtrip_gives_the_same_public_key() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let k = CredentialKey::generate(alg);
            let k2 = CredentialKey::from_secret(alg, &k.secret()).unwrap();
            assert_eq!(k.cose_public_key(), k2.cose_public_key());
            assert_eq!(k2.algorithm(), alg);
        }
    }

    #[test]
    fn es256_signature_verifies() {
        use p256::ecdsa::signature::Verifier;
        let k = CredentialKey::generate(Algorithm::Es256);
        let sig = k.sign(b"hello");
        let CredentialKey::Es256(sk) = &k else {
            unreachable!()
        };
        let der = p256::ecdsa::DerSignature::from_bytes(&sig).unwrap();
        let sig = p256::ecdsa::Signature::from_der(der.as_bytes()).unwrap();
        sk.verifying_key().verify(b"hello", &sig).unwrap();
    }

    #[test]
    fn pkcs8_roundtrip() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let k = CredentialKey::generate(alg);
            let der = k.to_pkcs8_der().unwrap();
            let back = CredentialKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.cose_public_key(), k.cose_public_key());
        }
        assert!(CredentialKey::from_pkcs8_der(b"not a key").is_none());
    }

    #[test]
    fn zero_scalar_is_not_a_key() {
        assert!(CredentialKey::from_secret(Algorithm::Es256, &[0u8; 32]).is_none());
    }
}
