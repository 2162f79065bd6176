//! What the authenticator tells the outside about itself while it works: typed domain
//! events through an injected [`EventSink`]. The core knows nothing of how they travel
//! (the control interface turns them into Chrome DevTools `WebAuthn` events); it never
//! puts a secret in them.

use crate::store::Credential;

/// A credential as the events (and the control interface) describe it: the fields of
/// Chrome DevTools' `WebAuthn.Credential`, without the private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    pub credential_id: Vec<u8>,
    /// Discoverable (CDP `isResidentCredential`).
    pub is_resident: bool,
    pub rp_id: String,
    pub user_handle: Option<Vec<u8>>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub sign_count: u32,
    pub backup_eligibility: bool,
    pub backup_state: bool,
}

impl CredentialInfo {
    /// Credential `credential_id` as `credentialAsserted` shows it after it signed with
    /// `sign_count`: the user fields come from its `stored` entry (a credential whose ID
    /// carries it has none), `backup` is its (BE, BS).
    pub(crate) fn asserted(
        credential_id: &[u8],
        is_resident: bool,
        rp_id: String,
        stored: Option<Credential>,
        sign_count: u32,
        (backup_eligibility, backup_state): (bool, bool),
    ) -> CredentialInfo {
        let (user_handle, user_name, user_display_name) = match stored {
            Some(c) => (Some(c.user_id), c.user_name, c.user_display_name),
            None => (None, None, None),
        };
        CredentialInfo {
            credential_id: credential_id.to_vec(),
            is_resident,
            rp_id,
            user_handle,
            user_name,
            user_display_name,
            sign_count,
            backup_eligibility,
            backup_state,
        }
    }
}

/// An event of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// makeCredential made a credential (or one was imported).
    CredentialAdded(CredentialInfo),
    /// getAssertion / getNextAssertion signed with a credential.
    CredentialAsserted(CredentialInfo),
    /// A credential's user information or properties changed.
    CredentialUpdated(CredentialInfo),
    /// A stored credential was deleted.
    CredentialDeleted { credential_id: Vec<u8> },
    /// A command asks for the user's touch; `id` numbers it (answers name it).
    PresenceRequested {
        id: u64,
        command: &'static str,
        rp_id: Option<String>,
        /// Whether it waits for an answer from outside (presence prompt or manual).
        waits: bool,
    },
}

/// Where the authenticator's events go.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event (a key without observers).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}
