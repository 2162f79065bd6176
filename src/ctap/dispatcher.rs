//! Routes a CTAP message to its command handler (§6, §8.1).

use ciborium::Value;

use super::status::{CtapResult, StatusCode};
use super::{Authenticator, CommandCode, MAX_MSG_SIZE, get_info};

/// Runs the command in `request`. `Ok(None)` is success with no response data.
pub(super) fn dispatch(auth: &mut Authenticator, request: &[u8]) -> CtapResult<Option<Value>> {
    let Some((&cmd, params)) = request.split_first() else {
        // A CTAPHID_CBOR message must at least hold the command byte.
        return Err(StatusCode::InvalidLength);
    };
    if request.len() > MAX_MSG_SIZE {
        return Err(StatusCode::RequestTooLarge);
    }
    match cmd {
        c if c == CommandCode::GetInfo as u8 => {
            // getInfo takes no parameters (§6.4).
            if !params.is_empty() {
                return Err(StatusCode::InvalidLength);
            }
            Ok(Some(get_info::get_info(auth)))
        }
        _ => Err(StatusCode::InvalidCommand),
    }
}
