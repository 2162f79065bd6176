//! authenticatorGetInfo (CTAP 2.1 §6.4): advertises exactly what this key implements,
//! because clients pick their code paths from it.

use ciborium::Value;

use super::cbor::MapBuilder;
use super::{
    AAGUID, Authenticator, MAX_CREDENTIAL_COUNT_IN_LIST, MAX_CREDENTIAL_ID_LENGTH, MAX_MSG_SIZE,
    firmware_version,
};
use crate::crypto::Algorithm;
use crate::store::MAX_DISCOVERABLE;

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

pub(super) fn get_info(auth: &Authenticator) -> Value {
    // versions: "FIDO_2_1" only once clientPIN, pinUvAuthToken and credential
    // management are complete (Safari/iOS broke on keys that claimed more than they did).
    let versions = vec![Value::Text("FIDO_2_0".into())];
    let options = MapBuilder::new()
        .text("rk", true)
        .text("up", true)
        .text("plat", false)
        .build();
    let algorithms = [Algorithm::Es256, Algorithm::EdDsa]
        .iter()
        .map(|a| {
            MapBuilder::new()
                .text("alg", int(a.cose_id()))
                .text("type", "public-key")
                .build()
        })
        .collect();
    let remaining = MAX_DISCOVERABLE.saturating_sub(auth.store.discoverable_count());
    MapBuilder::new()
        .int(0x01, Value::Array(versions))
        .int(0x03, Value::Bytes(AAGUID.to_vec()))
        .int(0x04, options)
        .int(0x05, int(MAX_MSG_SIZE as i64))
        .int(0x07, int(MAX_CREDENTIAL_COUNT_IN_LIST as i64))
        .int(0x08, int(MAX_CREDENTIAL_ID_LENGTH as i64))
        .int(0x09, Value::Array(vec![Value::Text("usb".into())]))
        .int(0x0a, Value::Array(algorithms))
        .int(0x0e, int(firmware_version() as i64))
        .int(0x14, int(remaining as i64))
        .build()
}
