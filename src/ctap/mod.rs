//! The CTAP 2.1 authenticator core.
//!
//! A plain function of (state, request bytes) → response bytes: [`Authenticator::process`]
//! takes a CTAP command byte followed by its CBOR parameters and returns the status
//! byte followed by the CBOR response. It knows nothing of USB or CTAPHID; what it needs
//! from the transport while a command runs (CANCEL, the UPNEEDED keepalive status) goes
//! through a [`RequestContext`]. One file per CTAP command, each with its request type
//! (parsed once, with the exact status for each problem) and its response type
//! (encoded once, canonically); extensions in `extensions/`, one module each; what a
//! power cycle clears in `runtime`. CTAP1/U2F APDUs (CTAPHID_MSG) go to
//! [`Authenticator::process_u2f`] (`u2f/`), over the same credentials and counters.

mod auth_data;
mod authenticator_config;
pub mod cbor;
mod client_pin;
mod credential_id;
mod credential_management;
mod dispatcher;
pub mod events;
mod extensions;
mod get_assertion;
mod get_info;
mod get_next_assertion;
mod large_blob_entries;
mod large_blobs;
mod make_credential;
mod management;
mod overrides;
mod params;
pub mod presence;
mod reset;
mod runtime;
mod selection;
pub mod status;
pub mod trace;
pub mod u2f;
mod user_verification;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use events::{CredentialInfo, Event, EventSink, NoEvents};
pub use management::{ImportCredential, KeyStatus, ManageError, StoredCredential};
pub use overrides::{OverrideBits, ResponseOverrides};
pub use presence::{
    AnswerError, PendingTouch, Presence, PresenceMode, RequestContext, RequestHandle, Touch,
};
pub use runtime::{Clock, FakeClock, SystemClock};
pub use status::{CtapResult, StatusCode};

use crate::crypto::attestation::Attestation;
use crate::pin::{KeyAgreement, Protocol};
use crate::store::{AttestationMaterial, Store, StoreError};
use credential_id::CredentialSource;
use extensions::CredProtect;
use runtime::RuntimeState;

/// The vkey AAGUID (WebAuthn §6.1: identifies the authenticator model). Fixed for every
/// vkey so that relying parties can recognise it; generated once, at random.
pub const AAGUID: [u8; 16] = [
    0x8f, 0xc7, 0x85, 0x83, 0xda, 0xbb, 0x4c, 0xe9, 0x81, 0xc2, 0x93, 0xb4, 0x32, 0x2a, 0xb0, 0x72,
];

/// The largest CTAP message (command byte + CBOR) we accept and advertise as
/// maxMsgSize: all a CTAPHID message can carry (57 + 128 × 59 bytes).
pub const MAX_MSG_SIZE: usize = 7609;
/// getInfo maxCredentialCountInList: allowList / excludeList entries per request.
pub const MAX_CREDENTIAL_COUNT_IN_LIST: usize = 64;
/// getInfo maxCredentialIdLength (ours are 64 bytes; longer IDs are not ours).
pub const MAX_CREDENTIAL_ID_LENGTH: usize = 128;

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

/// The attestation statement format of makeCredential (`vkey serve --attestation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationFormat {
    /// "packed" with x5c: the store's batch certificate, issued by its attestation CA.
    Packed,
    /// "packed" self attestation: signed with the new credential's own key.
    SelfAttestation,
    /// "none".
    None,
}

/// How a key behaves; set at start-up.
#[derive(Clone)]
pub struct Config {
    pub presence: Presence,
    pub attestation: AttestationFormat,
    /// authData BE: credentials are backup eligible (WebAuthn §6.1.3).
    pub backup_eligible: bool,
    /// authData BS: credentials are backed up. Only with `backup_eligible`.
    pub backup_state: bool,
    /// Built-in user verification (`vkey serve --uv`), or none.
    pub uv: Option<BuiltInUv>,
    /// The time for token timers, the reset window and stateful commands.
    pub clock: Arc<dyn Clock>,
    /// Where credential and presence events go.
    pub events: Arc<dyn EventSink>,
    /// CDP response override bits (bogus signature, UV / UP flags cleared).
    pub overrides: ResponseOverrides,
    /// CTAP1/U2F over CTAPHID_MSG, and "U2F_V2" in getInfo (`vkey serve --no-u2f`
    /// switches it off).
    pub u2f: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            presence: Presence::new(PresenceMode::Auto),
            attestation: AttestationFormat::Packed,
            backup_eligible: false,
            backup_state: false,
            uv: None,
            clock: Arc::new(SystemClock),
            events: Arc::new(NoEvents),
            overrides: ResponseOverrides::default(),
            u2f: true,
        }
    }
}

/// A simulated built-in user verification method (a fingerprint reader, say). Its
/// result is a switch, like Chrome's virtual authenticator `isUserVerified`; clones
/// share it, so it can be flipped while the key runs.
#[derive(Clone)]
pub struct BuiltInUv {
    verified: Arc<AtomicBool>,
}

impl BuiltInUv {
    pub fn new(verified: bool) -> BuiltInUv {
        BuiltInUv {
            verified: Arc::new(AtomicBool::new(verified)),
        }
    }
    pub fn set_result(&self, verified: bool) {
        self.verified.store(verified, Ordering::Release);
    }
    pub fn result(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Attestation(#[from] crate::crypto::attestation::AttestationError),
    #[error("the store's attestation key is unreadable")]
    BadAttestation,
}

/// The firmware version we report (getInfo 0x0E): major × 65536 + minor × 256 + patch.
pub fn firmware_version() -> u64 {
    let (major, minor, patch) = crate::version();
    u64::from(major) << 16 | u64::from(minor) << 8 | u64::from(patch)
}

/// One authenticator: its persistent store and its volatile state.
pub struct Authenticator {
    store: Store,
    config: Config,
    attestation: Option<Attestation>,
    /// What a power cycle clears.
    state: RuntimeState,
    /// getInfo, encoded.
    info_cache: get_info::InfoCache,
}

impl Authenticator {
    /// Opens the authenticator on `store`, creating the attestation CA and batch
    /// certificate on first start.
    pub fn new(mut store: Store, config: Config) -> Result<Authenticator, InitError> {
        crate::crypto::es256::warm_up();
        let attestation = match store.attestation() {
            Some(m) => Attestation::from_parts(&m.batch_key_pkcs8, m.batch_cert_der, m.ca_cert_der)
                .ok_or(InitError::BadAttestation)?,
            None => {
                let a = Attestation::generate(&AAGUID)?;
                let material = AttestationMaterial {
                    batch_key_pkcs8: a.batch_key_pkcs8(),
                    batch_cert_der: a.batch_cert_der.clone(),
                    ca_cert_der: a.ca_cert_der.clone(),
                };
                store.set_attestation(material, &a.ca_pem())?;
                a
            }
        };
        let state = RuntimeState::new(config.clock.now());
        config.presence.use_clock(config.clock.clone());
        Ok(Authenticator {
            store,
            config,
            attestation: Some(attestation),
            state,
            info_cache: Default::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The attestation CA certificate (PEM), for relying parties that verify chains.
    pub fn attestation_ca_pem(&self) -> Option<String> {
        self.attestation.as_ref().map(Attestation::ca_pem)
    }

    /// Power-up: a new USB session began (USB/IP import). Volatile state starts over.
    pub fn power_up(&mut self) {
        // A CTAP1/U2F client that polled for a touch is gone with the old session.
        if let Some(id) = self.state.polled_touch.asked_id() {
            self.config.presence.withdraw(id);
        }
        self.state = RuntimeState::new(self.now());
    }

    /// Whether CTAP1/U2F is on (CTAPHID advertises CTAPHID_MSG only then).
    pub fn u2f_enabled(&self) -> bool {
        self.config.u2f
    }

    fn now(&self) -> Instant {
        self.config.clock.now()
    }

    /// Whether a PIN is set.
    pub fn pin_is_set(&self) -> bool {
        self.store.pin_status().is_set
    }

    /// Whether the key is protected by some form of user verification (§6.1.2 step 6).
    fn is_protected(&self) -> bool {
        self.pin_is_set() || self.config.uv.is_some()
    }

    fn key_agreement(&mut self, p: Protocol) -> &mut KeyAgreement {
        &mut self.state.key_agreement[p.index()]
    }

    /// Processes one CTAPHID_CBOR message: command byte + CBOR parameters. Returns the
    /// status byte followed by the CBOR response (§8).
    pub fn process(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8> {
        match dispatcher::dispatch(self, request, ctx) {
            Ok(data) => {
                let mut out = Vec::with_capacity(1 + data.len());
                out.push(0x00);
                out.extend_from_slice(&data);
                out
            }
            Err(status) => vec![status.byte()],
        }
    }

    fn user_presence(&self, ctx: &RequestContext, touch: Touch<'_>) -> CtapResult<()> {
        let events = &self.config.events;
        self.config.presence.request(ctx, touch, |p| {
            events.emit(Event::PresenceRequested {
                id: p.id,
                command: p.command,
                rp_id: p.rp_id.clone(),
                waits: matches!(
                    self.config.presence.mode(),
                    PresenceMode::Prompt | PresenceMode::Manual
                ),
            })
        })
    }

    /// The key's BE/BS flags (`--backup-eligible`, `--backup-state`): what a new
    /// credential gets, and what a credential that is not stored shows.
    fn default_backup(&self) -> (bool, bool) {
        let be = self.config.backup_eligible;
        (be, be && self.config.backup_state)
    }

    /// BE/BS bits for authenticator data.
    fn backup_flags((eligible, state): (bool, bool)) -> u8 {
        let mut f = 0;
        if eligible {
            f |= auth_data::FLAG_BE;
            if state {
                f |= auth_data::FLAG_BS;
            }
        }
        f
    }

    /// The BE/BS flags of credential `id`: its own if it is stored with them, else the
    /// key's.
    fn backup_of(&self, id: &[u8]) -> (bool, bool) {
        let (be, bs) = self.default_backup();
        match self.store.get_credential(id) {
            Some(c) => (
                c.backup_eligible.unwrap_or(be),
                c.backup_state.unwrap_or(bs),
            ),
            None => (be, bs),
        }
    }

    /// A credential ID that is ours for this RP: it opens under our wrapping key with
    /// this RP ID hash (and, if it is discoverable, it is still in the store), or the
    /// store holds it with its own private key for this RP (an imported credential).
    fn find_credential(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<CredentialSource> {
        if id.len() > MAX_CREDENTIAL_ID_LENGTH {
            return None;
        }
        if let Some(src) = credential_id::open(self.store.wrapping_key(), rp_id_hash, id) {
            // Deleted or replaced (§6.1.2 step 17): no longer ours.
            let listed = !src.props.discoverable || self.store.get_credential(id).is_some();
            return listed.then_some(src);
        }
        let stored = self.store.get_credential(id)?;
        if crate::crypto::sha256(stored.rp_id.as_bytes()) != *rp_id_hash {
            return None;
        }
        let key = stored.private_key.as_ref()?;
        let props = credential_id::Properties {
            discoverable: stored.discoverable,
            cred_protect: CredProtect::from_level(stored.cred_protect.into())?,
            hmac_secret: stored.hmac_secret,
            large_blob_key: stored.large_blob_key,
            cred_blob: stored.cred_blob.clone(),
        };
        Some(CredentialSource::from_stored(key, props))
    }
}

#[cfg(test)]
mod tests;
