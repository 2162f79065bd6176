//! minPinLength (CTAP 2.1 §12.4): tells the RPs that authenticatorConfig
//! setMinPINLength named (minPinLengthRPIDs) the current minimum PIN length.

use ciborium::Value;

use crate::ctap::cbor::read;
use crate::ctap::status::CtapResult;

pub const NAME: &str = "minPinLength";

/// The input: `true` asks for the output.
pub fn parse(v: Value) -> CtapResult<bool> {
    read::boolean(v)
}
