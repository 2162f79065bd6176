//! What the control interface may do to a key besides CTAP (the powers of Chrome
//! DevTools' virtual authenticator): list, show, import and delete credentials, change
//! their backup flags, set the PIN, reset without the 10 s window. Typed, and ignorant
//! of how the requests arrive; it runs on the thread that owns the authenticator, so
//! it is serialised with CTAP requests.

use ciborium::Value;
use zeroize::Zeroizing;

use super::credential_id;
use super::dispatcher::Response;
use super::events::{CredentialInfo, Event};
use super::get_info::get_info;
use super::params::MAX_USER_ID_LEN;
use super::runtime::RuntimeState;
use super::{AAGUID, Authenticator, MAX_CREDENTIAL_ID_LENGTH};
use crate::crypto::{self, Algorithm, CredentialKey};
use crate::pin::policy;
use crate::store::{Credential, PrivateKey, StoreError};

/// A credential with its private key (PKCS#8 DER), as exported.
pub struct StoredCredential {
    pub info: CredentialInfo,
    pub algorithm: Algorithm,
    /// `None` only if the key cannot be recovered (never for our own credentials).
    pub private_key: Option<Zeroizing<Vec<u8>>>,
}

/// A credential to import (CDP `WebAuthn.addCredential`).
pub struct ImportCredential {
    pub credential_id: Vec<u8>,
    pub is_resident: bool,
    pub rp_id: String,
    /// PKCS#8 DER: a P-256 key (ES256) or an Ed25519 key (EdDSA).
    pub private_key: Zeroizing<Vec<u8>>,
    pub user_handle: Option<Vec<u8>>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub sign_count: u32,
    /// `None`: the key's `--backup-eligible` / `--backup-state`.
    pub backup_eligibility: Option<bool>,
    pub backup_state: Option<bool>,
}

/// Why a management request was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no such credential")]
    NotFound,
    #[error("a credential with this credentialId exists already")]
    Duplicate,
    #[error("the current PIN does not match")]
    WrongPin,
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A key's state for `GET /v1/keys`.
#[derive(Clone, Debug)]
pub struct KeyStatus {
    pub aaguid: [u8; 16],
    /// getInfo's options, by name.
    pub options: Vec<(String, bool)>,
    pub pin_set: bool,
    pub pin_retries: u8,
    /// With built-in UV only.
    pub uv_retries: Option<u8>,
    /// Stored credentials.
    pub credentials: usize,
}

impl Authenticator {
    /// The key's state, with getInfo's options as a client sees them.
    pub fn status(&self) -> KeyStatus {
        let mut options = Vec::new();
        if let Ok(info) = get_info(self, &[])
            && let Some(Value::Map(entries)) = info.encode()
            && let Some((_, Value::Map(opts))) = entries
                .into_iter()
                .find(|(k, _)| k.as_integer() == Some(0x04.into()))
        {
            for (k, v) in opts {
                if let (Value::Text(name), Value::Bool(b)) = (k, v) {
                    options.push((name, b));
                }
            }
        }
        let pin = self.store.pin_status();
        KeyStatus {
            aaguid: AAGUID,
            options,
            pin_set: pin.is_set,
            pin_retries: pin.retries,
            uv_retries: self.config.uv.as_ref().map(|_| pin.uv_retries),
            credentials: self.store.credential_count(),
        }
    }

    /// A stored credential as the control interface shows it, with its private key.
    fn export(&self, c: &Credential) -> StoredCredential {
        let key = match &c.private_key {
            Some(k) => CredentialKey::from_secret(k.algorithm, &k.secret),
            None => {
                let hash = crypto::sha256(c.rp_id.as_bytes());
                credential_id::open(self.store.wrapping_key(), &hash, &c.id)
                    .and_then(|src| src.key())
            }
        };
        let (be, bs) = self.backup_of(&c.id);
        StoredCredential {
            info: CredentialInfo {
                credential_id: c.id.clone(),
                is_resident: c.discoverable,
                rp_id: c.rp_id.clone(),
                user_handle: Some(c.user_id.clone()).filter(|u| !u.is_empty()),
                user_name: c.user_name.clone(),
                user_display_name: c.user_display_name.clone(),
                sign_count: self.store.counter(&c.id),
                backup_eligibility: be,
                backup_state: bs,
            },
            algorithm: key
                .as_ref()
                .map_or(Algorithm::Es256, CredentialKey::algorithm),
            private_key: key.and_then(|k| k.to_pkcs8_der()),
        }
    }

    /// Every stored credential (discoverable ones, and imported ones), oldest first.
    /// A non-discoverable credential made over CTAP is not stored (its ID carries it);
    /// [`credential`](Self::credential) opens one when given its RP ID.
    pub fn list_credentials(&self) -> Vec<StoredCredential> {
        self.store
            .credentials()
            .iter()
            .map(|c| self.export(c))
            .collect()
    }

    /// The stored credential `id`, or, with `rp_id`, a non-discoverable credential ID
    /// this key issued for that RP.
    pub fn credential(&self, id: &[u8], rp_id: Option<&str>) -> Option<StoredCredential> {
        if let Some(c) = self.store.get_credential(id) {
            return Some(self.export(&c)).filter(|e| rp_id.is_none_or(|r| r == e.info.rp_id));
        }
        let rp_id = rp_id?;
        let src = credential_id::open(
            self.store.wrapping_key(),
            &crypto::sha256(rp_id.as_bytes()),
            id,
        )?;
        // A discoverable ID that is no longer stored was deleted or replaced.
        if src.props.discoverable {
            return None;
        }
        let key = src.key()?;
        let (be, bs) = self.default_backup();
        Some(StoredCredential {
            info: CredentialInfo {
                credential_id: id.to_vec(),
                is_resident: false,
                rp_id: rp_id.to_string(),
                user_handle: None,
                user_name: None,
                user_display_name: None,
                sign_count: self.store.counter(id),
                backup_eligibility: be,
                backup_state: bs,
            },
            algorithm: key.algorithm(),
            private_key: key.to_pkcs8_der(),
        })
    }

    /// Imports a credential under the caller's ID; usable at once by getAssertion. A
    /// non-resident one is stored too (the key must find it in an allowList), but not
    /// listed for its RP.
    pub fn import_credential(
        &mut self,
        c: ImportCredential,
    ) -> Result<StoredCredential, ManageError> {
        let invalid = |s: String| Err(ManageError::Invalid(s));
        if c.credential_id.is_empty() || c.credential_id.len() > MAX_CREDENTIAL_ID_LENGTH {
            return invalid(format!(
                "credentialId is {} bytes: this key takes 1 to {MAX_CREDENTIAL_ID_LENGTH} (getInfo maxCredentialIdLength)",
                c.credential_id.len()
            ));
        }
        if c.rp_id.is_empty() {
            return invalid("rpId is empty".into());
        }
        let user_handle = c.user_handle.unwrap_or_default();
        if user_handle.len() > MAX_USER_ID_LEN {
            return invalid(format!(
                "userHandle is {} bytes: at most {MAX_USER_ID_LEN}",
                user_handle.len()
            ));
        }
        if c.is_resident && user_handle.is_empty() {
            return invalid("a resident credential needs a userHandle".into());
        }
        let Some(key) = CredentialKey::from_pkcs8_der(&c.private_key) else {
            return invalid(
                "privateKey is not a PKCS#8 P-256 (ES256) or Ed25519 (EdDSA) private key".into(),
            );
        };
        let (default_be, default_bs) = self.default_backup();
        let be = c.backup_eligibility.unwrap_or(default_be);
        let bs = c.backup_state.unwrap_or(default_bs && be);
        if bs && !be {
            return invalid("backupState needs backupEligibility (WebAuthn §6.1)".into());
        }
        let own = credential_id::open(
            self.store.wrapping_key(),
            &crypto::sha256(c.rp_id.as_bytes()),
            &c.credential_id,
        );
        if self.store.get_credential(&c.credential_id).is_some() || own.is_some() {
            return Err(ManageError::Duplicate);
        }
        let id = c.credential_id.clone();
        self.store.put_credential(Credential {
            id: id.clone(),
            rp_id: c.rp_id,
            rp_name: None,
            user_id: user_handle,
            user_name: c.user_name,
            user_display_name: c.user_display_name,
            cred_protect: 1,
            discoverable: c.is_resident,
            private_key: Some(PrivateKey {
                algorithm: key.algorithm(),
                secret: key.secret(),
            }),
            backup_eligible: Some(be),
            backup_state: Some(bs),
            // An imported credential can do what one made here can: its CredRandom and
            // largeBlobKey derive from the imported key (a largeBlobKey only for a
            // discoverable one, as CTAP 2.1 keeps large blobs).
            hmac_secret: true,
            large_blob_key: c.is_resident,
            cred_blob: Vec::new(),
        })?;
        if let Err(e) = self.store.set_counter(&id, c.sign_count) {
            let _ = self.store.delete_credential(&id);
            return Err(e.into());
        }
        let stored = self.credential(&id, None).ok_or(ManageError::NotFound)?;
        self.config
            .events
            .emit(Event::CredentialAdded(stored.info.clone()));
        Ok(stored)
    }

    /// Deletes the stored credential `id`.
    pub fn remove_credential(&mut self, id: &[u8]) -> Result<(), ManageError> {
        if !self.store.delete_credential(id)? {
            return Err(ManageError::NotFound);
        }
        self.config.events.emit(Event::CredentialDeleted {
            credential_id: id.to_vec(),
        });
        Ok(())
    }

    /// Deletes every stored credential; returns how many there were.
    pub fn clear_credentials(&mut self) -> Result<usize, ManageError> {
        let ids: Vec<Vec<u8>> = self.store.credentials().into_iter().map(|c| c.id).collect();
        self.store.clear_credentials()?;
        for id in &ids {
            self.config.events.emit(Event::CredentialDeleted {
                credential_id: id.clone(),
            });
        }
        Ok(ids.len())
    }

    /// CDP setCredentialProperties: a stored credential's backup eligibility and state.
    pub fn set_credential_properties(
        &mut self,
        id: &[u8],
        backup_eligibility: Option<bool>,
        backup_state: Option<bool>,
    ) -> Result<StoredCredential, ManageError> {
        if self.store.get_credential(id).is_none() {
            return Err(ManageError::NotFound);
        }
        let (be, bs) = self.backup_of(id);
        let (be, bs) = (backup_eligibility.unwrap_or(be), backup_state.unwrap_or(bs));
        if bs && !be {
            return Err(ManageError::Invalid(
                "backupState needs backupEligibility (WebAuthn §6.1)".into(),
            ));
        }
        self.store.set_backup_flags(id, Some(be), Some(bs))?;
        let stored = self.credential(id, None).ok_or(ManageError::NotFound)?;
        self.config
            .events
            .emit(Event::CredentialUpdated(stored.info.clone()));
        Ok(stored)
    }

    /// Sets or changes the PIN (retries full, tokens void). With `current`, it must
    /// match the PIN that is set.
    pub fn set_pin(&mut self, pin: &[u8], current: Option<&[u8]>) -> Result<(), ManageError> {
        let status = self.store.pin_status();
        if let Some(cur) = current
            && status.is_set
            && !self.store.pin_hash_matches(&policy::pin_hash(cur))
        {
            return Err(ManageError::WrongPin);
        }
        let min = status.min_pin_length;
        let code_points = policy::check_pin(pin, min).map_err(|_| {
            ManageError::Invalid(format!(
                "the PIN does not meet the policy: at least {min} characters, at most 63 bytes of UTF-8, no NUL"
            ))
        })?;
        self.store.set_pin(&policy::pin_hash(pin), code_points)?;
        self.state.token.reset();
        self.state.pin_failures = 0;
        tracing::info!("PIN set through the control interface");
        Ok(())
    }

    /// authenticatorReset without the 10 s window and the touch: every credential,
    /// the PIN and the wrapping key go; volatile state starts over.
    pub fn factory_reset(&mut self) -> Result<(), ManageError> {
        let ids: Vec<Vec<u8>> = self.store.credentials().into_iter().map(|c| c.id).collect();
        self.store.reset()?;
        self.state = RuntimeState::new(self.state.powered_up);
        for id in ids {
            self.config
                .events
                .emit(Event::CredentialDeleted { credential_id: id });
        }
        tracing::info!("authenticator reset through the control interface");
        Ok(())
    }
}
