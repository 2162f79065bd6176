//! CTAP requests: the input is one CTAPHID_CBOR message (command byte, then CBOR
//! parameters) for `Authenticator::process` on a fresh ephemeral key, so the command
//! byte from the input reaches every command. The response is a status byte and, on
//! success, canonical CBOR no longer than the largest CTAPHID message.
//!
//! Every input gets a new key (no state leaks from one input to the next, so a crash
//! replays); only the attestation certificates, slow to make, are made once and put in
//! each new store.
#![no_main]

#[path = "../common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use vkey::ctap::{Config, MAX_MSG_SIZE, RequestContext};

fuzz_target!(|data: &[u8]| {
    let mut auth = common::fresh_key(Config::default());
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
