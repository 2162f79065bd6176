//! authenticatorGetNextAssertion (0x08), CTAP 2.1 §6.3: the next of the credentials a
//! discoverable getAssertion found. Valid only as the very next command after
//! getAssertion / getNextAssertion and within 30 s of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ciborium::Value;

use super::Authenticator;
use super::get_assertion::assertion;
use super::status::{CtapResult, StatusCode};

pub const NEXT_ASSERTION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NextAssertionState {
    pub rp_id_hash: [u8; 32],
    pub client_data_hash: Vec<u8>,
    pub flags: u8,
    pub remaining: VecDeque<Vec<u8>>,
    pub deadline: Instant,
}

pub(super) fn get_next_assertion(auth: &mut Authenticator, params: &[u8]) -> CtapResult<Value> {
    if !params.is_empty() {
        return Err(StatusCode::InvalidLength);
    }
    let mut state = auth.next_assertion.take().ok_or(StatusCode::NotAllowed)?;
    if Instant::now() > state.deadline {
        return Err(StatusCode::NotAllowed);
    }
    let id = state.remaining.pop_front().ok_or(StatusCode::NotAllowed)?;
    let resp = assertion(
        auth,
        &state.rp_id_hash,
        &state.client_data_hash,
        state.flags,
        &id,
        None,
        true,
    )?;
    if !state.remaining.is_empty() {
        state.deadline = Instant::now() + NEXT_ASSERTION_TIMEOUT;
        auth.next_assertion = Some(state);
    }
    Ok(resp)
}
