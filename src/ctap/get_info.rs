//! authenticatorGetInfo (CTAP 2.1 §6.4): advertises exactly what this key implements,
//! because clients pick their code paths from it.

use ciborium::Value;

use super::cbor::MapBuilder;
use super::{AAGUID, Authenticator, MAX_MSG_SIZE, firmware_version};

pub(super) fn get_info(_auth: &Authenticator) -> Value {
    // versions: "FIDO_2_1" only once clientPIN, pinUvAuthToken and credential
    // management are complete (Safari/iOS broke on keys that claimed more than they did).
    let versions = vec![Value::Text("FIDO_2_0".into())];
    MapBuilder::new()
        .int(0x01, Value::Array(versions))
        .int(0x03, Value::Bytes(AAGUID.to_vec()))
        .int(0x05, Value::Integer((MAX_MSG_SIZE as u64).into()))
        .int(0x09, Value::Array(vec![Value::Text("usb".into())]))
        .int(0x0e, Value::Integer(firmware_version().into()))
        .build()
}
