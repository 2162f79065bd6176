//! The per-store attestation CA and batch certificate (WebAuthn §8.2.1 "Packed
//! Attestation Statement Certificate Requirements"), made with rcgen on our own P-256
//! keys (no second crypto library).

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
    SignatureAlgorithm,
};
use zeroize::Zeroizing;

use super::es256::Es256Key;

/// id-fido-gen-ce-aaguid: the AAGUID extension of an attestation certificate.
const OID_FIDO_AAGUID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];
/// id-fido-u2f-ce-transports: bit string of transports; bit 2 = USB.
const OID_FIDO_TRANSPORTS: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 2, 1, 1];

/// id-ce-basicConstraints (RFC 5280 §4.2.1.9).
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];

/// The CA's common name: generic, identical for every vkey.
const CA_COMMON_NAME: &str = "vkey CA";
/// The batch certificate's common name: generic as well. Short on purpose: every byte of
/// the batch certificate travels in every packed makeCredential response (x5c), 59 bytes
/// to a CTAPHID continuation report.
const BATCH_COMMON_NAME: &str = "vkey Batch";

#[derive(Debug, thiserror::Error)]
#[error("attestation certificate: {0}")]
pub struct AttestationError(String);

/// An rcgen signer backed by a p256 key.
struct P256Signer {
    key: SigningKey,
    public: Vec<u8>,
}

impl P256Signer {
    fn new(key: SigningKey) -> P256Signer {
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        P256Signer { key, public }
    }
}

impl PublicKeyData for P256Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::DerSignature = p256::ecdsa::signature::Signer::sign(&self.key, msg);
        Ok(sig.as_bytes().to_vec())
    }
}

/// What a key attests with: the batch key and certificate, and the CA that issued it.
pub struct Attestation {
    pub batch_key: SigningKey,
    /// The batch key again, for the attestation signatures ([`Es256Key`] is ~5× faster).
    signer: Es256Key,
    pub batch_cert_der: Vec<u8>,
    pub ca_cert_der: Vec<u8>,
}

/// A positive serial number of 64 random bits: unique per issuer with overwhelming
/// probability (the CA/Browser Forum asks for 64 bits of randomness), and 8 bytes shorter
/// in every x5c than 128 bits would be.
fn random_serial() -> SerialNumber {
    let mut b: [u8; 8] = super::random_bytes();
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and not starting with a zero byte
    SerialNumber::from_slice(&b)
}

/// The key identifier of a public key: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey (RFC 7093 §2, method 1). rcgen without its own crypto back end would
/// otherwise write an empty SubjectKeyIdentifier.
fn key_identifier(public_sec1: &[u8]) -> KeyIdMethod {
    KeyIdMethod::PreSpecified(super::sha256(public_sec1)[..20].to_vec())
}

/// basicConstraints CA:FALSE, critical: what WebAuthn §8.2.1 asks of an attestation
/// certificate, as a custom extension so that rcgen does not add a SubjectKeyIdentifier
/// beside it (RFC 5280 §4.2.1.2 only says SHOULD for end-entity certificates, and the
/// bytes travel in every response).
fn not_a_ca() -> CustomExtension {
    // SEQUENCE {} : cA defaults to FALSE and is omitted in DER.
    let mut ext = CustomExtension::from_oid_content(OID_BASIC_CONSTRAINTS, vec![0x30, 0x00]);
    ext.set_criticality(true);
    ext
}

/// A certificate that never expires in practice (RFC 5280 §4.1.2.5: a device certificate
/// has no well-defined expiration).
fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
}

impl Attestation {
    /// Generates a CA and a batch certificate for `aaguid`. Their names are the same for
    /// every vkey (privacy: nothing in them tells one key from another, in particular not
    /// the USB serial); only the keys differ.
    pub fn generate(aaguid: &[u8; 16]) -> Result<Attestation, AttestationError> {
        let err = |e: rcgen::Error| AttestationError(e.to_string());
        let mut rng = rand::rng();
        let ca_key = P256Signer::new(
            <SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut rng),
        );
        let batch_key = <SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut rng);

        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CountryName, "US");
        ca.distinguished_name.push(DnType::OrganizationName, "vkey");
        ca.distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.key_identifier_method = key_identifier(ca_key.der_bytes());
        ca.serial_number = Some(random_serial());
        validity(&mut ca);
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

        // WebAuthn §8.2.1: version 3; Subject C, O, OU = "Authenticator Attestation", CN;
        // basic constraints CA:FALSE; the AAGUID extension, not critical. Nothing more:
        // no key usage, no key identifiers (as hardware keys' batch certificates).
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CountryName, "US");
        leaf.distinguished_name
            .push(DnType::OrganizationName, "vkey");
        leaf.distinguished_name
            .push(DnType::OrganizationalUnitName, "Authenticator Attestation");
        leaf.distinguished_name
            .push(DnType::CommonName, BATCH_COMMON_NAME);
        leaf.is_ca = IsCa::NoCa;
        leaf.serial_number = Some(random_serial());
        validity(&mut leaf);
        let mut aaguid_ext = vec![0x04, 0x10];
        aaguid_ext.extend_from_slice(aaguid);
        leaf.custom_extensions = vec![
            not_a_ca(),
            CustomExtension::from_oid_content(OID_FIDO_AAGUID, aaguid_ext),
            // BIT STRING, 5 unused bits, bit 2 (USB) set.
            CustomExtension::from_oid_content(OID_FIDO_TRANSPORTS, vec![0x03, 0x02, 0x05, 0x20]),
        ];
        let issuer = Issuer::from_params(&ca, &ca_key);
        let batch_signer = P256Signer::new(batch_key.clone());
        let leaf_cert = leaf.signed_by(&batch_signer, &issuer).map_err(err)?;
        Attestation::new(batch_key, leaf_cert.der().to_vec(), ca_cert.der().to_vec())
            .ok_or_else(|| AttestationError("the batch key does not load in AWS-LC".into()))
    }

    /// The batch key as PKCS#8 DER, for the store.
    pub fn batch_key_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        match self.batch_key.to_pkcs8_der() {
            Ok(d) => Zeroizing::new(d.as_bytes().to_vec()),
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }

    pub fn from_parts(
        batch_key_pkcs8: &[u8],
        batch_cert_der: Vec<u8>,
        ca_cert_der: Vec<u8>,
    ) -> Option<Attestation> {
        let batch_key = SigningKey::from_pkcs8_der(batch_key_pkcs8).ok()?;
        Attestation::new(batch_key, batch_cert_der, ca_cert_der)
    }

    fn new(batch_key: SigningKey, batch_cert_der: Vec<u8>, ca_cert_der: Vec<u8>) -> Option<Self> {
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(batch_key.to_bytes().into());
        Some(Attestation {
            signer: Es256Key::from_secret(&secret)?,
            batch_key,
            batch_cert_der,
            ca_cert_der,
        })
    }

    /// Signs with the batch key (ES256, DER signature); `None` only if the crypto
    /// library fails inside.
    pub fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        self.signer.sign(msg)
    }

    /// The CA certificate in PEM, for relying parties that want to trust it.
    pub fn ca_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.ca_cert_der.clone()))
    }
}

/// A self-signed certificate for `key` (a credential's own key), for a CTAP1/U2F
/// registration without batch attestation: U2F must carry an X.509 certificate
/// (U2F Raw Message Formats v1.2 §4.3), and this one tells nothing about the key beyond
/// that public key (fixed names, a random serial number).
pub fn self_signed_certificate(key: &SigningKey) -> Result<Vec<u8>, AttestationError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "vkey U2F Self Attestation");
    params.is_ca = IsCa::NoCa;
    params.custom_extensions = vec![not_a_ca()];
    params.serial_number = Some(random_serial());
    validity(&mut params);
    let cert = params
        .self_signed(&P256Signer::new(key.clone()))
        .map_err(|e| AttestationError(e.to_string()))?;
    Ok(cert.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_and_roundtrips() {
        let a = Attestation::generate(&[1u8; 16]).unwrap();
        assert!(a.batch_cert_der.len() > 200);
        // The AAGUID extension is in the certificate.
        let needle = [&[0x04u8, 0x10][..], &[1u8; 16]].concat();
        assert!(a.batch_cert_der.windows(18).any(|w| w == needle.as_slice()));
        let b = Attestation::from_parts(
            &a.batch_key_pkcs8(),
            a.batch_cert_der.clone(),
            a.ca_cert_der.clone(),
        )
        .unwrap();
        assert_eq!(a.batch_key.verifying_key(), b.batch_key.verifying_key());
        assert!(a.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
