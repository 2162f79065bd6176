//! What a power cycle clears, in one struct, and the clock it is timed with.
//!
//! CTAP 2.1 §6.5.6 initialize(): new key agreement keys, no pinUvAuthToken, the
//! PIN_AUTH_BLOCKED count back to zero. The reset window (§6.6) starts at power-up. And
//! at most one stateful command is in progress (§6.3 getNextAssertion, §6.8
//! enumerateRPs / enumerateCredentials, §6.10 a large-blob write in fragments): it lives
//! while its next step follows at once and within 30 s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::get_next_assertion::PendingAssertions;
use super::large_blobs::PendingLargeBlobs;
use super::presence::PolledTouch;
use crate::pin::{KeyAgreement, PinUvAuthToken};
use crate::store::RpInfo;

/// Where the authenticator reads the time: token timers, the reset window, the
/// stateful-command timer. (User presence waits on the transport's real time.)
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to; clones share it.
#[derive(Clone)]
pub struct FakeClock(Arc<Mutex<Instant>>);

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock(Arc::new(Mutex::new(Instant::now())))
    }
}

impl FakeClock {
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stateful command ends if its next step does not come within this time.
pub const STATEFUL_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The stateful command in progress and what its next step needs.
pub(super) enum StatefulCommand {
    /// §6.3: the credentials getAssertion found and has not returned yet.
    GetNextAssertion(PendingAssertions),
    /// §6.8.3: RPs not yet returned by enumerateRPsGetNextRP.
    EnumerateRps(VecDeque<RpInfo>),
    /// §6.8.4: credential IDs not yet returned by enumerateCredentialsGetNextCredential.
    EnumerateCredentials(VecDeque<Vec<u8>>),
    /// §6.10.2: a serialized large-blob array being written in fragments.
    LargeBlobsSet(PendingLargeBlobs),
}

/// The authenticator's volatile state.
pub(super) struct RuntimeState {
    /// When the current USB session began: authenticatorReset is allowed for 10 s after.
    pub powered_up: Instant,
    /// Key agreement keys of PIN/UV auth protocols 1 and 2.
    pub key_agreement: [KeyAgreement; 2],
    pub token: PinUvAuthToken,
    /// Wrong PINs in a row; at 3, PIN use is blocked until power cycle.
    pub pin_failures: u8,
    stateful: Option<(StatefulCommand, Instant)>,
    /// The touch a polling CTAP1/U2F client asked for.
    pub polled_touch: PolledTouch,
}

impl RuntimeState {
    /// The state right after power-up at `now`.
    pub fn new(now: Instant) -> RuntimeState {
        RuntimeState {
            powered_up: now,
            key_agreement: [KeyAgreement::new(), KeyAgreement::new()],
            token: PinUvAuthToken::new(),
            pin_failures: 0,
            stateful: None,
            polled_touch: PolledTouch::default(),
        }
    }

    /// Starts (or continues) a stateful command; its timer starts at `now`.
    pub fn begin_stateful(&mut self, command: StatefulCommand, now: Instant) {
        self.stateful = Some((command, now + STATEFUL_COMMAND_TIMEOUT));
    }

    /// Ends the stateful command in progress; returns it if its timer is still running,
    /// for the command that continues it.
    pub fn take_stateful(&mut self, now: Instant) -> Option<StatefulCommand> {
        self.stateful
            .take()
            .filter(|(_, deadline)| now <= *deadline)
            .map(|(command, _)| command)
    }
}
