//! CTAP requests: the input is one CTAPHID_CBOR message (command byte, then CBOR
//! parameters) for `Authenticator::process` on a fresh ephemeral key, so the command
//! byte from the input reaches every command. The response is a status byte and, on
//! success, canonical CBOR no longer than the largest CTAPHID message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vkey::ctap::{Authenticator, Config, MAX_MSG_SIZE, RequestContext};
use vkey::store::Store;

fuzz_target!(|data: &[u8]| {
    let Ok(mut auth) = Authenticator::new(Store::ephemeral(), Config::default()) else {
        return;
    };
    let (ctx, _handle) = RequestContext::new();
    let resp = auth.process(data, &ctx);
    assert!(!resp.is_empty() && resp.len() <= MAX_MSG_SIZE);
    if resp[0] == 0 && resp.len() > 1 {
        let v = vkey::ctap::cbor::decode(&resp[1..]).expect("a response decodes");
        assert_eq!(vkey::ctap::cbor::encode(&v), resp[1..], "canonical response");
    }
});
