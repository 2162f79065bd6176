//! Attestation privacy: the batch certificate and its CA carry nothing unique to one key
//! in their names (not the USB serial, not a store label). What does identify a store —
//! its batch key — is documented in the README with `--attestation none` / `self`.

use ciborium::Value;
use vkey::ctap::{Authenticator, Config, RequestContext};
use vkey::key::{Key, KeyShared};
use vkey::store::Store;
use vkey::usbip::ExportedDevice;
use x509_cert::Certificate;
use x509_cert::der::Decode;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// makeCredential (ES256, packed attestation) → the x5c batch certificate.
fn batch_certificate(auth: &mut Authenticator) -> Vec<u8> {
    let params = Value::Map(vec![
        (Value::Integer(1.into()), Value::Bytes(vec![7; 32])),
        (
            Value::Integer(2.into()),
            Value::Map(vec![(text("id"), text("example.com"))]),
        ),
        (
            Value::Integer(3.into()),
            Value::Map(vec![(text("id"), Value::Bytes(vec![1; 16]))]),
        ),
        (
            Value::Integer(4.into()),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), Value::Integer((-7).into())),
                (text("type"), text("public-key")),
            ])]),
        ),
    ]);
    let mut req = vec![0x01];
    ciborium::into_writer(&params, &mut req).unwrap();
    let (ctx, _h) = RequestContext::new();
    let resp = auth.process(&req, &ctx);
    assert_eq!(resp[0], 0, "makeCredential failed");
    let v: Value = ciborium::from_reader(&resp[1..]).unwrap();
    let member = |v: &Value, k: Value| {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(member(&v, Value::Integer(1.into())), text("packed"));
    let att_stmt = member(&v, Value::Integer(3.into()));
    let x5c = member(&att_stmt, text("x5c"));
    x5c.as_array().unwrap()[0].as_bytes().unwrap().clone()
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
            "CN=vkey Batch Certificate,OU=Authenticator Attestation,O=vkey,C=US"
        );
        certs.push((ca_subject, batch_subject));
        serials.push(serial);
    }
    // Two keys (two stores) have different serials but the very same names: nothing in
    // them tells one key from another.
    assert_ne!(serials[0], serials[1]);
    assert_eq!(certs[0], certs[1]);
}
