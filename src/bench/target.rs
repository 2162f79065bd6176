//! One key under measurement: its connection (re-established once it breaks, within a
//! budget), what getInfo said, its PIN set-up, the credentials the assertions use, and
//! the attribution of its server process's CPU time to tokens and operations.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::client_pin::{self, PERM_GA, PERM_MC, PinMethod};
use super::ctap2::{
    self, Attestation, Credential, CtapError, GET_INFO, GetAssertion, Info, MakeCredential,
};
use super::hid::{CMD_CBOR, CMD_PING, Ctaphid, HidError, hid_error_name};
use super::host::{HostError, UsbipHost};
use super::ops::{Kind, Op};
use super::procfs;
use crate::pin::Protocol;

/// Credentials remembered for discoverable assertions (each ~100 bytes).
const MAX_KNOWN_CREDENTIALS: usize = 100_000;

/// Where a key is and what to call it.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub label: Option<String>,
    pub address: String,
    pub busid: String,
    /// The server process, if known; otherwise looked up for loopback addresses.
    pub pid: Option<u32>,
}

impl TargetSpec {
    /// `[LABEL=]HOST:PORT/BUSID`.
    pub fn parse(s: &str) -> Result<TargetSpec, String> {
        let (label, rest) = match s.split_once('=') {
            Some((l, r)) if !l.is_empty() => (Some(l.to_string()), r),
            _ => (None, s),
        };
        let (address, busid) = rest
            .rsplit_once('/')
            .ok_or_else(|| format!("{s:?}: expected [LABEL=]HOST:PORT/BUSID"))?;
        if busid.is_empty() || busid.len() > 31 || !address.contains(':') {
            return Err(format!("{s:?}: expected [LABEL=]HOST:PORT/BUSID"));
        }
        Ok(TargetSpec {
            label,
            address: address.to_string(),
            busid: busid.to_string(),
            pid: None,
        })
    }

    pub fn display(&self) -> String {
        format!("{}/{}", self.address, self.busid)
    }
}

/// The run-wide settings an operation needs.
pub struct Settings {
    pub rp_id: String,
    pub alg: i64,
    pub pin: Option<Zeroizing<String>>,
    pub timeout: Duration,
    pub reconnects: u32,
}

/// Why one attempt failed, as counted in the results.
pub struct Failure {
    /// The key in the error counts (a spec name where there is one).
    pub key: String,
    pub message: String,
}

impl Failure {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            key: key.into(),
            message: message.into(),
        }
    }

    fn prefixed(self, prefix: &str) -> Failure {
        Failure {
            key: format!("{prefix}{}", self.key),
            message: format!("{prefix}{}", self.message),
        }
    }
}

impl From<CtapError> for Failure {
    fn from(e: CtapError) -> Failure {
        match &e {
            CtapError::Status(s) => Failure::new(ctap2::status_name(*s), e.to_string()),
            CtapError::Invalid(_) => Failure::new("invalid_response", e.to_string()),
        }
    }
}

/// What was measured for one operation on one target.
#[derive(Default, Clone, Debug)]
pub struct Samples {
    pub attempted: u64,
    pub latencies_ns: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub error_examples: Vec<String>,
    pub tokens_ns: Vec<u64>,
    pub cpu_op_ns: u64,
    pub cpu_token_ns: u64,
    pub cpu_known: bool,
    pub signatures_verified: u64,
    pub attestation: Option<String>,
}

impl Samples {
    fn error(&mut self, f: Failure) {
        *self.errors.entry(f.key).or_default() += 1;
        if self.error_examples.len() < 3 && !self.error_examples.contains(&f.message) {
            self.error_examples.push(f.message);
        }
    }
}

/// Oddities of a key's interrupt-IN pipe, summed over its connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct InCounts {
    /// Completions without data (usbhid ignores them).
    pub empty: u64,
    /// Completions with an error status.
    pub errors: u64,
    /// Reports dropped because 64 were waiting (hidraw's ring).
    pub dropped: u64,
}

impl InCounts {
    fn add(&mut self, h: &UsbipHost) {
        self.empty += h.empty_in;
        self.errors += h.in_errors;
        self.dropped += h.dropped_reports;
    }
}

/// What the server's CPU time since the last checkpoint is attributed to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Idle,
    Token,
    Op,
}

enum PinState {
    /// No PIN given, or the key has none and none was asked for.
    Off,
    Ready(PinMethod),
    /// The key cannot give tokens (no PIN support, wrong PIN, blocked): why.
    Unusable(String),
}

pub struct Target {
    pub spec: TargetSpec,
    pub index: usize,
    conn: Option<Ctaphid>,
    pub dead: Option<String>,
    reconnects_left: u32,
    pub usb: Option<super::host::DeviceInfo>,
    pub ctaphid: Option<super::hid::InitInfo>,
    pub info: Option<Info>,
    pin: PinState,
    /// The credential each getAssertion variant (rk, pin) uses.
    creds: BTreeMap<(bool, bool), Vec<u8>>,
    /// Every credential made on this key in this run (bounded), by ID: a discoverable
    /// assertion may come from any of them.
    known: HashMap<Vec<u8>, Credential>,
    cpu_mark: Option<(u64, Segment)>,
    /// A per-target counter, for distinct client data.
    seq: u64,
    /// Host counters of closed connections.
    closed_counts: InCounts,
    pin_invalid_in_a_row: u32,
}

impl Target {
    /// Connects, runs getInfo and (with a PIN) sets it or checks the key takes it.
    pub fn connect(spec: TargetSpec, index: usize, s: &Settings) -> Target {
        let mut t = Target {
            spec,
            index,
            conn: None,
            dead: None,
            reconnects_left: s.reconnects,
            usb: None,
            ctaphid: None,
            info: None,
            pin: PinState::Off,
            creds: BTreeMap::new(),
            known: HashMap::new(),
            cpu_mark: None,
            seq: 0,
            closed_counts: InCounts::default(),
            pin_invalid_in_a_row: 0,
        };
        if t.spec.pid.is_none()
            && let Ok(addr) = t.spec.address.parse::<std::net::SocketAddr>()
            && addr.ip().is_loopback()
        {
            t.spec.pid = procfs::listening_pid(addr);
        }
        if let Err(e) = t.open(s) {
            t.dead = Some(e);
            return t;
        }
        t.setup_pin(s);
        t
    }

    pub fn name(&self) -> String {
        match &self.spec.label {
            Some(l) => l.clone(),
            None => self
                .usb
                .as_ref()
                .map(|u| u.product.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| self.spec.display()),
        }
    }

    pub fn pin_description(&self) -> String {
        match &self.pin {
            PinState::Off => "no PIN in use".into(),
            PinState::Ready(m) => m.describe(),
            PinState::Unusable(why) => format!("PIN unusable: {why}"),
        }
    }

    fn open(&mut self, s: &Settings) -> Result<(), String> {
        let host = UsbipHost::attach(&self.spec.address, &self.spec.busid, s.timeout)
            .map_err(|e| format!("attach: {e}"))?;
        self.usb = Some(host.info.clone());
        let mut conn = Ctaphid::new(host, s.timeout).map_err(|e| format!("CTAPHID_INIT: {e}"))?;
        self.ctaphid = Some(conn.init.clone());
        let resp = conn
            .transact(CMD_CBOR, &ctap2::request(GET_INFO, None))
            .map_err(|e| format!("getInfo: {e}"))?;
        self.info = Some(ctap2::parse_info(&resp).map_err(|e| format!("getInfo: {e}"))?);
        self.conn = Some(conn);
        Ok(())
    }

    /// Chooses the token method from getInfo and sets the PIN if the key has none.
    fn setup_pin(&mut self, s: &Settings) {
        let Some(pin) = s.pin.as_ref() else {
            return;
        };
        let Some(info) = self.info.clone() else {
            return;
        };
        let protocol = if info.pin_protocols.contains(&2) {
            Protocol::Two
        } else if info.pin_protocols.contains(&1) || info.pin_protocols.is_empty() {
            // CTAP 2.0 keys may omit pinUvAuthProtocols: protocol 1 is implied.
            Protocol::One
        } else {
            self.pin = PinState::Unusable("no PIN/UV protocol 1 or 2".into());
            return;
        };
        let method = PinMethod {
            protocol,
            with_permissions: info.pin_uv_auth_token,
        };
        match info.client_pin {
            None => self.pin = PinState::Unusable("the key has no clientPin".into()),
            Some(true) => self.pin = PinState::Ready(method),
            Some(false) => {
                self.pin = match self.set_pin(method, pin) {
                    Ok(()) => PinState::Ready(method),
                    Err(f) => PinState::Unusable(format!("setPIN: {}", f.message)),
                }
            }
        }
    }

    fn set_pin(&mut self, m: PinMethod, pin: &str) -> Result<(), Failure> {
        let resp = self.cbor(&client_pin::key_agreement_request(m))?;
        let (ours, shared) = client_pin::shared_secret(m, &resp)?;
        let resp = self.cbor(&client_pin::set_pin_request(m, pin, ours, &shared))?;
        ctap2::parse_response(&resp)?;
        Ok(())
    }

    /// One CTAPHID exchange; a broken connection is dropped (and re-opened next time).
    fn exchange(&mut self, cmd: u8, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::new("connection_lost", "not connected"));
        };
        match conn.transact(cmd, payload) {
            Ok(r) => Ok(r),
            Err(e) => {
                let key = match &e {
                    HidError::Device(c) => format!("CTAPHID_{}", hid_error_name(*c)),
                    HidError::Framing(_) => "ctaphid_framing".into(),
                    HidError::Host(HostError::Timeout) => "timeout".into(),
                    HidError::Host(HostError::Closed(_)) => "connection_lost".into(),
                    HidError::Host(HostError::Protocol(_)) => "usbip_protocol".into(),
                    HidError::Host(HostError::Status(s)) => format!("usb_status_{s}"),
                };
                if matches!(
                    e,
                    HidError::Host(HostError::Closed(_) | HostError::Protocol(_))
                ) || conn.host.is_wedged()
                {
                    self.closed_counts.add(&conn.host);
                    self.conn = None;
                }
                Err(Failure::new(key, e.to_string()))
            }
        }
    }

    fn cbor(&mut self, req: &[u8]) -> Result<Vec<u8>, Failure> {
        self.exchange(CMD_CBOR, req)
    }

    /// Re-opens a dropped connection within the reconnect budget; else the target is
    /// out of the run.
    fn ensure_connected(&mut self, s: &Settings) -> Result<(), Failure> {
        if let Some(why) = &self.dead {
            return Err(Failure::new("target_down", why.clone()));
        }
        if self.conn.is_some() {
            return Ok(());
        }
        if self.reconnects_left == 0 {
            let why = "connection lost, no reconnects left".to_string();
            self.dead = Some(why.clone());
            return Err(Failure::new("target_down", why));
        }
        self.reconnects_left -= 1;
        // A re-import is a power cycle: tokens and key agreement start afresh.
        self.open(s).map_err(|e| {
            self.dead = Some(format!("reconnect failed: {e}"));
            Failure::new("target_down", e)
        })
    }

    /// Attributes the server CPU time since the last checkpoint to what ran then.
    pub fn checkpoint(&mut self, next: Segment, rec: Option<&mut Samples>) {
        let Some(pid) = self.spec.pid else {
            return;
        };
        let Some(now) = procfs::cpu_ns(pid) else {
            return;
        };
        if let (Some((then, seg)), Some(rec)) = (self.cpu_mark, rec) {
            let d = now.saturating_sub(then);
            match seg {
                Segment::Op => rec.cpu_op_ns += d,
                Segment::Token => rec.cpu_token_ns += d,
                Segment::Idle => {}
            }
            rec.cpu_known = true;
        }
        self.cpu_mark = Some((now, next));
    }

    fn client_data_hash(&mut self) -> [u8; 32] {
        self.seq += 1;
        let mut h = crate::crypto::random_bytes::<32>();
        h[..8].copy_from_slice(&self.seq.to_be_bytes());
        h
    }

    fn user_id(&self) -> Vec<u8> {
        // One user per key and RP: a repeated discoverable registration replaces the
        // previous one instead of filling the key.
        b"vkey-bench-user".to_vec()
    }

    /// A fresh token with `permissions`, timed and attributed as a token.
    fn token(
        &mut self,
        s: &Settings,
        permissions: u64,
        rec: &mut Samples,
    ) -> Result<(PinMethod, Zeroizing<Vec<u8>>), Failure> {
        let m = match &self.pin {
            PinState::Ready(m) => *m,
            PinState::Off => return Err(Failure::new("no_pin", "the op needs --pin")),
            PinState::Unusable(why) => return Err(Failure::new("pin_unusable", why.clone())),
        };
        let pin = s.pin.clone().unwrap_or_default();
        self.checkpoint(Segment::Token, Some(rec));
        let t0 = Instant::now();
        let result = (|| {
            let resp = self.cbor(&client_pin::key_agreement_request(m))?;
            let (ours, shared) = client_pin::shared_secret(m, &resp)?;
            let resp = self.cbor(&client_pin::token_request(
                m,
                &pin,
                ours,
                &shared,
                permissions,
                &s.rp_id,
            ))?;
            Ok::<_, Failure>(client_pin::token(m, &resp, &shared)?)
        })();
        match result {
            Ok(t) => {
                rec.tokens_ns.push(t0.elapsed().as_nanos() as u64);
                self.pin_invalid_in_a_row = 0;
                Ok((m, t))
            }
            Err(f) => {
                // A wrong PIN costs a retry: stop at the second PIN_INVALID in a row (a
                // key may fail one exchange on its own: virtual-fido's ECDH drops leading
                // zero bytes of the shared point), and at once when blocked.
                match f.key.as_str() {
                    "CTAP2_ERR_PIN_INVALID" => {
                        self.pin_invalid_in_a_row += 1;
                        if self.pin_invalid_in_a_row >= 2 {
                            self.pin = PinState::Unusable(f.message.clone());
                        }
                    }
                    "CTAP2_ERR_PIN_BLOCKED" | "CTAP2_ERR_PIN_AUTH_BLOCKED" => {
                        self.pin = PinState::Unusable(f.message.clone());
                    }
                    _ => {}
                }
                Err(f.prefixed("token:"))
            }
        }
    }

    fn pin_auth(
        &mut self,
        s: &Settings,
        op_pin: bool,
        permissions: u64,
        cdh: &[u8; 32],
        rec: &mut Samples,
    ) -> Result<Option<(Vec<u8>, u64)>, Failure> {
        if !op_pin {
            return Ok(None);
        }
        let (m, token) = self.token(s, permissions, rec)?;
        Ok(Some((
            client_pin::auth_param(m, &token, cdh),
            m.protocol_number(),
        )))
    }

    /// Times one CTAP2 request (the server CPU in its window counts as the op's).
    fn timed_cbor(&mut self, req: &[u8], rec: &mut Samples) -> Result<(Vec<u8>, u64), Failure> {
        self.checkpoint(Segment::Op, Some(rec));
        let t0 = Instant::now();
        let r = self.cbor(req)?;
        Ok((r, t0.elapsed().as_nanos() as u64))
    }

    fn make_credential(
        &mut self,
        s: &Settings,
        rk: bool,
        pin: bool,
        verify: bool,
        rec: &mut Samples,
    ) -> Result<(Credential, u64), Failure> {
        let cdh = self.client_data_hash();
        let pin_auth = self.pin_auth(s, pin, PERM_MC, &cdh, rec)?;
        let user_id = self.user_id();
        let p = MakeCredential {
            client_data_hash: &cdh,
            rp_id: &s.rp_id,
            user_id: &user_id,
            alg: s.alg,
            rk,
            pin_auth,
        };
        let (resp, ns) = self.timed_cbor(&ctap2::make_credential_request(&p), rec)?;
        let (cred, att, fmt) = ctap2::check_make_credential(&resp, &p, verify)?;
        if att == Attestation::Verified {
            rec.signatures_verified += 1;
        }
        rec.attestation = Some(fmt);
        if self.known.len() < MAX_KNOWN_CREDENTIALS || rk {
            self.known.insert(cred.id.clone(), cred.clone());
        }
        Ok((cred, ns))
    }

    /// getAssertion with `id` in the allowList, or discoverable (`None`).
    fn get_assertion(
        &mut self,
        s: &Settings,
        id: Option<&[u8]>,
        pin: bool,
        verify: bool,
        rec: &mut Samples,
    ) -> Result<u64, Failure> {
        let cdh = self.client_data_hash();
        let pin_auth = self.pin_auth(s, pin, PERM_GA, &cdh, rec)?;
        let p = GetAssertion {
            client_data_hash: &cdh,
            rp_id: &s.rp_id,
            allow: id,
            pin_auth,
        };
        let (resp, ns) = self.timed_cbor(&ctap2::get_assertion_request(&p), rec)?;
        let a = ctap2::parse_assertion(&resp, &p)?;
        let Some(used) = a.credential_id.as_deref().or(id) else {
            return Err(Failure::new("invalid_response", "no credential ID"));
        };
        let Some(cred) = self.known.get_mut(used) else {
            return Err(Failure::new(
                "invalid_response",
                "assertion from a credential this run did not make",
            ));
        };
        ctap2::check_assertion(&a, &p, cred, verify)?;
        if verify {
            rec.signatures_verified += 1;
        }
        Ok(ns)
    }

    /// Makes the credential getAssertion will use (discoverable or not), with a token
    /// when the key has a PIN we know (a discoverable one needs it there).
    pub fn prepare(&mut self, op: Op, s: &Settings) -> Result<(), Failure> {
        let Kind::GetAssertion { rk } = op.kind else {
            return Ok(());
        };
        self.ensure_connected(s)?;
        if self.creds.contains_key(&(rk, op.pin)) {
            return Ok(());
        }
        let use_pin = matches!(self.pin, PinState::Ready(_));
        let mut scratch = Samples::default();
        let (cred, _) = self
            .make_credential(s, rk, use_pin, true, &mut scratch)
            .map_err(|f| f.prefixed("setup:"))?;
        self.known.insert(cred.id.clone(), cred.clone());
        self.creds.insert((rk, op.pin), cred.id);
        Ok(())
    }

    /// Runs one operation and records it (latency of the timed requests only).
    pub fn run_one(&mut self, op: Op, s: &Settings, verify: bool, rec: &mut Samples) {
        rec.attempted += 1;
        match self.try_one(op, s, verify, rec) {
            Ok(ns) => rec.latencies_ns.push(ns),
            Err(f) => rec.error(f),
        }
    }

    fn try_one(
        &mut self,
        op: Op,
        s: &Settings,
        verify: bool,
        rec: &mut Samples,
    ) -> Result<u64, Failure> {
        self.ensure_connected(s)?;
        match op.kind {
            Kind::Ping(len) => {
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
                self.checkpoint(Segment::Op, Some(rec));
                let t0 = Instant::now();
                let r = self.exchange(CMD_PING, &payload)?;
                let ns = t0.elapsed().as_nanos() as u64;
                if r != payload {
                    return Err(Failure::new("invalid_response", "PING echo differs"));
                }
                Ok(ns)
            }
            Kind::GetInfo => {
                let (r, ns) = self.timed_cbor(&ctap2::request(GET_INFO, None), rec)?;
                ctap2::parse_info(&r)?;
                Ok(ns)
            }
            Kind::MakeCredential { rk } => Ok(self.make_credential(s, rk, op.pin, verify, rec)?.1),
            Kind::GetAssertion { rk } => {
                let Some(id) = self.creds.get(&(rk, op.pin)).cloned() else {
                    return Err(Failure::new(
                        "setup:no_credential",
                        "no credential to assert",
                    ));
                };
                let allow = (!rk).then_some(id.as_slice());
                self.get_assertion(s, allow, op.pin, verify, rec)
            }
            Kind::Mixed => {
                // make_credential remembers it; forget it after, so `known` stays small.
                let (cred, a) = self.make_credential(s, false, op.pin, verify, rec)?;
                let b = self.get_assertion(s, Some(&cred.id), op.pin, verify, rec);
                self.known.remove(&cred.id);
                Ok(a + b?)
            }
        }
    }

    /// What the host saw of the interrupt-IN pipe over the run.
    pub fn in_counts(&self) -> InCounts {
        let mut c = self.closed_counts;
        if let Some(conn) = &self.conn {
            c.add(&conn.host);
        }
        c
    }

    /// A short line about the key, for the run's header.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.spec.display()];
        if let Some(u) = &self.usb {
            parts.push(format!(
                "{:04x}:{:04x} {:?}",
                u.vendor_id, u.product_id, u.product
            ));
        }
        if let Some(i) = &self.info {
            parts.push(i.versions.join(","));
        }
        parts.push(self.pin_description());
        match self.spec.pid {
            Some(pid) => parts.push(format!(
                "server pid {pid} ({})",
                procfs::comm(pid).unwrap_or_default()
            )),
            None => parts.push("server pid unknown (no CPU figures)".into()),
        }
        if let Some(d) = &self.dead {
            parts.push(format!("DOWN: {d}"));
        }
        parts.join(", ")
    }
}
