//! The CTAP 2.1 authenticator core.
//!
//! A plain function of (state, request bytes) → response bytes: [`Authenticator::process`]
//! takes a CTAP command byte followed by its CBOR parameters and returns the status
//! byte followed by the CBOR response. It knows nothing of USB or CTAPHID and is
//! tested with plain byte messages. One file per CTAP command.

pub mod cbor;
mod dispatcher;
mod get_info;
pub mod status;

pub use status::{CtapResult, StatusCode};

use crate::store::Store;

/// The vkey AAGUID (WebAuthn §6.1: identifies the authenticator model). Fixed for every
/// vkey so that relying parties can recognise it; generated once, at random.
pub const AAGUID: [u8; 16] = [
    0x8f, 0xc7, 0x85, 0x83, 0xda, 0xbb, 0x4c, 0xe9, 0x81, 0xc2, 0x93, 0xb4, 0x32, 0x2a, 0xb0, 0x72,
];

/// The largest CTAP message (command byte + CBOR) we accept and advertise as
/// maxMsgSize: all a CTAPHID message can carry (57 + 128 × 59 bytes).
pub const MAX_MSG_SIZE: usize = 7609;

/// CTAP command bytes (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CommandCode {
    MakeCredential = 0x01,
    GetAssertion = 0x02,
    GetInfo = 0x04,
    ClientPin = 0x06,
    Reset = 0x07,
    GetNextAssertion = 0x08,
    CredentialManagement = 0x0a,
    Selection = 0x0b,
    LargeBlobs = 0x0c,
    Config = 0x0d,
    CredentialManagementPreview = 0x41,
}

/// The firmware version we report (getInfo 0x0E): major × 65536 + minor × 256 + patch.
pub fn firmware_version() -> u64 {
    let p = |s: &str| s.parse::<u64>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) << 16
        | p(env!("CARGO_PKG_VERSION_MINOR")) << 8
        | p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// One authenticator: its persistent store and its volatile state.
pub struct Authenticator {
    store: Store,
}

impl Authenticator {
    pub fn new(store: Store) -> Authenticator {
        Authenticator { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Power-up: a new USB session began (USB/IP import). Volatile state starts over.
    pub fn power_up(&mut self) {}

    /// Processes one CTAPHID_CBOR message: command byte + CBOR parameters. Returns the
    /// status byte followed by the CBOR response (§8).
    pub fn process(&mut self, request: &[u8]) -> Vec<u8> {
        match dispatcher::dispatch(self, request) {
            Ok(Some(v)) => {
                let mut out = vec![0x00];
                out.extend_from_slice(&cbor::encode(&v));
                out
            }
            Ok(None) => vec![0x00],
            Err(status) => vec![status.byte()],
        }
    }
}

#[cfg(test)]
mod tests;
