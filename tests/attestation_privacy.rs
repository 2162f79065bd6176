//! Attestation privacy: the batch certificate and its CA carry nothing unique to one key
//! in their names (not the USB serial, not a store label). What does identify a store —
//! its batch key — is documented in the README with `--attestation none` / `self`.

mod support;

use ciborium::Value;
use support::cbor::{int, make_credential, member, text};
use vkey::ctap::{Authenticator, Config, RequestContext};
use vkey::key::{Key, KeyShared};
use vkey::store::Store;
use vkey::usbip::ExportedDevice;
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// makeCredential (ES256, packed attestation) → the x5c batch certificate.
fn batch_certificate(auth: &mut Authenticator) -> Vec<u8> {
    let req = make_credential("example.com", &[1; 16], false);
    let (ctx, _h) = RequestContext::new();
    let resp = auth.process(&req, &ctx);
    assert_eq!(resp[0], 0, "makeCredential failed");
    let v: Value = ciborium::from_reader(&resp[1..]).unwrap();
    assert_eq!(member(&v, &int(1)), Some(&text("packed")));
    let att_stmt = member(&v, &int(3)).unwrap();
    let x5c = member(att_stmt, &text("x5c")).unwrap();
    x5c.as_array().unwrap()[0].as_bytes().unwrap().clone()
}

/// The extensions of a certificate as (OID, critical, value).
fn extensions(cert: &Certificate) -> Vec<(String, bool, Vec<u8>)> {
    let exts = cert
        .tbs_certificate()
        .extensions()
        .cloned()
        .unwrap_or_default();
    exts.iter()
        .map(|e| {
            (
                e.extn_id.to_string(),
                e.critical,
                e.extn_value.as_bytes().to_vec(),
            )
        })
        .collect()
}

fn names(cert: &Certificate) -> (String, String) {
    let tbs = &cert.tbs_certificate();
    (tbs.subject().to_string(), tbs.issuer().to_string())
}

#[test]
fn attestation_names_carry_nothing_unique_to_one_key() {
    let mut certs = Vec::new();
    let mut serials = Vec::new();
    for _ in 0..2 {
        let mut config = Config::default();
        let shared = KeyShared::for_config("1-1", &mut config);
        let mut auth = Authenticator::new(Store::ephemeral(), config).unwrap();
        let ca_pem = auth.attestation_ca_pem().unwrap();
        let batch_der = batch_certificate(&mut auth);
        let serial = Key::new(auth, shared).unwrap().identity().serial;
        assert!(serial.len() >= 8, "USB serial {serial:?}");
        let ca = Certificate::from_der(pem::parse(&ca_pem).unwrap().contents()).unwrap();
        let batch = Certificate::from_der(&batch_der).unwrap();
        let (ca_subject, ca_issuer) = names(&ca);
        let (batch_subject, batch_issuer) = names(&batch);
        println!("CA: subject {ca_subject}; issuer {ca_issuer}");
        println!("batch: subject {batch_subject}; issuer {batch_issuer}");
        for name in [&ca_subject, &ca_issuer, &batch_subject, &batch_issuer] {
            assert!(
                !name.to_lowercase().contains(&serial.to_lowercase()),
                "{name:?} carries the USB serial {serial}"
            );
        }
        // The batch certificate is issued by the CA; WebAuthn §8.2.1 subject fields.
        assert_eq!(batch_issuer, ca_subject);
        assert_eq!(
            batch_subject,
            "CN=vkey Batch,OU=Authenticator Attestation,O=vkey,C=US"
        );
        certs.push((ca_subject, batch_subject));
        serials.push(serial);
    }
    // Two keys (two stores) have different serials but the very same names: nothing in
    // them tells one key from another.
    assert_ne!(serials[0], serials[1]);
    assert_eq!(certs[0], certs[1]);
}

/// WebAuthn §8.2.1: the batch certificate has basicConstraints CA:FALSE (critical) and the
/// AAGUID extension, plus the U2F transports extension, and nothing else (every byte of
/// it travels in each packed makeCredential response). The CA has a real key identifier
/// (RFC 5280 §4.2.1.2: a CA MUST have one), not the empty one rcgen writes by default.
#[test]
fn certificates_carry_what_webauthn_asks_and_key_identifiers_are_real() {
    use sha2::{Digest, Sha256};
    let mut auth = Authenticator::new(Store::ephemeral(), Config::default()).unwrap();
    let ca_pem = auth.attestation_ca_pem().unwrap();
    let batch = Certificate::from_der(&batch_certificate(&mut auth)).unwrap();
    let ca = Certificate::from_der(pem::parse(&ca_pem).unwrap().contents()).unwrap();

    let batch_exts = extensions(&batch);
    let oids: Vec<&str> = batch_exts.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(
        oids,
        [
            "2.5.29.19",
            "1.3.6.1.4.1.45724.1.1.4",
            "1.3.6.1.4.1.45724.2.1.1"
        ]
    );
    // basicConstraints: critical, an empty SEQUENCE (cA FALSE by default).
    assert_eq!(batch_exts[0], ("2.5.29.19".into(), true, vec![0x30, 0x00]));
    assert!(
        !batch_exts[1].1,
        "the AAGUID extension must not be critical"
    );
    assert_eq!(batch.tbs_certificate().version(), x509_cert::Version::V3);

    let ski = extensions(&ca)
        .into_iter()
        .find(|(o, _, _)| o == "2.5.29.14")
        .expect("the CA has a SubjectKeyIdentifier")
        .2;
    let ca_public = ca
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let expected = &Sha256::digest(&ca_public)[..20];
    // OCTET STRING, 20 bytes: the leftmost 160 bits of SHA-256 (RFC 7093 §2 method 1).
    assert_eq!(ski, [&[0x04, 20][..], expected].concat());
}
