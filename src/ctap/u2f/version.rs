//! U2F_VERSION (U2F Raw Message Formats v1.2 §6): the version string, no request data.

use super::apdu::StatusWord;

/// The only version U2F defines (§6.2), also getInfo's name for CTAP1/U2F (CTAP 2.1 §6.4).
pub(super) const VERSION: &str = "U2F_V2";

/// The request has no data (§6.1).
pub(super) fn parse(data: &[u8]) -> Result<(), StatusWord> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(StatusWord::WrongLength)
    }
}
