//! authenticatorSelection (0x0B), CTAP 2.1 §6.9: the platform asks the user to touch
//! the key they want to use.

use super::Authenticator;
use super::cbor::no_parameters;
use super::presence::{RequestContext, Touch};
use super::status::CtapResult;

pub(super) fn selection(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<()> {
    no_parameters(params)?;
    let touch = Touch {
        command: "selection",
        rp_id: None,
        user_name: None,
    };
    auth.user_presence(ctx, touch)
}
