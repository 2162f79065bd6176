//! authenticatorGetNextAssertion (0x08), CTAP 2.1 §6.3: the next of the credentials a
//! discoverable getAssertion found. Valid only as the very next command after
//! getAssertion / getNextAssertion and within 30 s of it.

use std::collections::VecDeque;

use super::Authenticator;
use super::cbor::no_parameters;
use super::get_assertion::{AssertionContext, GetAssertionResponse, assertion};
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};

/// What getNextAssertion needs from the getAssertion that found several credentials.
pub struct PendingAssertions {
    pub context: AssertionContext,
    pub remaining: VecDeque<Vec<u8>>,
}

pub(super) fn get_next_assertion(
    auth: &mut Authenticator,
    params: &[u8],
    stateful: Option<StatefulCommand>,
) -> CtapResult<GetAssertionResponse> {
    no_parameters(params)?;
    let Some(StatefulCommand::GetNextAssertion(mut pending)) = stateful else {
        return Err(StatusCode::NotAllowed);
    };
    let id = pending
        .remaining
        .pop_front()
        .ok_or(StatusCode::NotAllowed)?;
    let resp = assertion(auth, &pending.context, &id)?;
    if !pending.remaining.is_empty() {
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::GetNextAssertion(pending), now);
    }
    Ok(resp)
}
