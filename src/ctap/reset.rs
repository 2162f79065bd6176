//! authenticatorReset (0x07), CTAP 2.1 §6.6: only within 10 s of power-up (for us: of
//! the USB/IP import), after a touch; wipes credentials and secrets.

use std::time::Duration;

use super::Authenticator;
use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};

pub const RESET_WINDOW: Duration = Duration::from_secs(10);

pub(super) fn reset(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<()> {
    if !params.is_empty() {
        return Err(StatusCode::InvalidLength);
    }
    if auth.now().saturating_duration_since(auth.state.powered_up) > RESET_WINDOW {
        return Err(StatusCode::NotAllowed);
    }
    auth.user_presence(ctx, "reset the key (erases every credential)")?;
    auth.store.reset().map_err(|e| {
        tracing::error!("reset failed: {e}");
        StatusCode::Other
    })?;
    // Volatile PIN/UV state goes with the PIN: token, failures, key agreement keys. The
    // reset window stays as it was.
    auth.state = super::runtime::RuntimeState::new(auth.state.powered_up);
    tracing::info!("authenticator reset");
    Ok(())
}
