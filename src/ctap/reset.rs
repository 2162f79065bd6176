//! authenticatorReset (0x07), CTAP 2.1 §6.6: only within 10 s of power-up (for us: of
//! the USB/IP import), after a touch; wipes credentials and secrets.

use std::time::Duration;

use super::Authenticator;
use super::cbor::no_parameters;
use super::presence::{RequestContext, Touch};
use super::runtime::RuntimeState;
use super::status::{CtapResult, StatusCode};

pub const RESET_WINDOW: Duration = Duration::from_secs(10);

pub(super) fn reset(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<()> {
    no_parameters(params)?;
    if auth.now().saturating_duration_since(auth.state.powered_up) > RESET_WINDOW {
        return Err(StatusCode::NotAllowed);
    }
    let touch = Touch {
        command: "reset",
        rp_id: None,
        user_name: None,
    };
    auth.user_presence(ctx, touch)?;
    auth.store.reset()?;
    // Volatile PIN/UV state goes with the PIN: token, failures, key agreement keys. The
    // reset window stays as it was.
    auth.state = RuntimeState::new(auth.state.powered_up);
    tracing::info!("authenticator reset");
    Ok(())
}
