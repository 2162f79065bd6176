//! What several targets share: a fresh key per input (no state leaks from one input to
//! the next, so every crash replays alone), with the attestation certificates, slow to
//! make, made once per process and put in each new store.
#![allow(dead_code)] // each target uses part of it

use std::sync::OnceLock;

use vkey::ctap::{Authenticator, Config};
use vkey::store::{AttestationMaterial, Store};

fn attestation() -> &'static (AttestationMaterial, String) {
    static ONCE: OnceLock<(AttestationMaterial, String)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let auth = Authenticator::new(Store::ephemeral(), Config::default()).expect("a key");
        let material = auth.store().attestation().expect("attestation material");
        (material, auth.attestation_ca_pem().expect("CA"))
    })
}

/// A new ephemeral key with `config`.
pub fn fresh_key(config: Config) -> Authenticator {
    let (material, ca_pem) = attestation();
    let mut store = Store::ephemeral();
    store
        .set_attestation(material.clone(), ca_pem)
        .expect("attestation into a new store");
    Authenticator::new(store, config).expect("a key")
}

/// Reads the fuzz input as a stream of small values; past its end, zeros.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// `n` bytes: the input's next ones, then a counting pattern (not zeros, so that a
    /// short input still makes distinct data).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.0.len());
        let (head, rest) = self.0.split_at(take);
        self.0 = rest;
        let mut v = head.to_vec();
        v.extend((take..n).map(|i| i as u8));
        v
    }
}
