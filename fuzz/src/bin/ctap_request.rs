//! CTAP requests: the input is one CTAPHID_CBOR message (command byte, then CBOR
//! parameters) for `Authenticator::process` on a fresh ephemeral key, so the command
//! byte from the input reaches every command. The response is a status byte and, on
//! success, canonical CBOR no longer than the largest CTAPHID message.
//!
//! Every input gets a new key (no state leaks from one input to the next, so a crash
//! replays); only the attestation certificates, slow to make, are made once and put in
//! each new store.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vkey::ctap::{Authenticator, Config, MAX_MSG_SIZE, RequestContext};
use vkey::store::{AttestationMaterial, Store};

fn attestation() -> &'static (AttestationMaterial, String) {
    static ONCE: OnceLock<(AttestationMaterial, String)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let auth = Authenticator::new(Store::ephemeral(), Config::default()).expect("a key");
        let material = auth.store().attestation().expect("attestation material");
        (material, auth.attestation_ca_pem().expect("CA"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (material, ca_pem) = attestation();
    let mut store = Store::ephemeral();
    if store.set_attestation(material.clone(), ca_pem).is_err() {
        return;
    }
    let Ok(mut auth) = Authenticator::new(store, Config::default()) else {
        return;
    };
    let (ctx, _handle) = RequestContext::new();
    let resp = auth.process(data, &ctx);
    assert!(!resp.is_empty() && resp.len() <= MAX_MSG_SIZE);
    if resp[0] == 0 && resp.len() > 1 {
        let v = vkey::ctap::cbor::decode(&resp[1..]).expect("a response decodes");
        assert_eq!(
            vkey::ctap::cbor::encode(&v),
            resp[1..],
            "canonical response"
        );
    }
});
