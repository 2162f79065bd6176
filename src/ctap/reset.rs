//! authenticatorReset (0x07), CTAP 2.1 §6.6: only within 10 s of power-up (for us: of
//! the USB/IP import), after a touch; wipes credentials and secrets.

use std::time::{Duration, Instant};

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
    if Instant::now().saturating_duration_since(auth.powered_up) > RESET_WINDOW {
        return Err(StatusCode::NotAllowed);
    }
    auth.user_presence(ctx, "reset the key (erases every credential)")?;
    auth.store.reset().map_err(|e| {
        tracing::error!("reset failed: {e}");
        StatusCode::Other
    })?;
    // Volatile PIN/UV state goes with the PIN: token, failures, key agreement keys.
    auth.power_up_at(auth.powered_up);
    tracing::info!("authenticator reset");
    Ok(())
}
