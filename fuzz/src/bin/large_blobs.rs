//! authenticatorLargeBlobs (0x0C, CTAP 2.1 §6.10) in fragments, through the CTAP core,
//! against a model of §6.10.2. The input is a script run on one fresh key: reads at
//! any offset, whole arrays written in fragments of any size (with a right or a broken
//! trailer), single fragments at chosen offsets and lengths, another command between
//! fragments, the clock moved (the 30 s between fragments, the token's timers), a power
//! cycle. The first byte may protect the key with a PIN: then each fragment carries a
//! pinUvAuthParam that is right (made with a real lbw token), wrong, or missing.
//!
//! Every answer must be the one the model predicts (the status of §6.10.2's first
//! failing step, or success), and every read must return the bytes of the array the
//! model holds. Raw CBOR for 0x0C is the ctap_request target's; this one goes deep.
#![no_main]

#[path = "../common.rs"]
mod common;

use std::time::{Duration, Instant};

use ciborium::Value;
use common::{Input, fresh_key};
use libfuzzer_sys::fuzz_target;
use vkey::crypto::sha256;
use vkey::ctap::{Authenticator, Config, FakeClock, MAX_MSG_SIZE, RequestContext};
use vkey::pin::{KeyAgreement, Protocol};

const LARGE_BLOBS: u8 = 0x0c;
/// maxFragmentLength (§6.10.1): maxMsgSize − 64.
const MAX_FRAGMENT: usize = MAX_MSG_SIZE - 64;
/// What getInfo says as maxSerializedLargeBlobArray (checked once per input).
const MAX_ARRAY: usize = 16 * 1024;
const TRAILER: usize = 16;
const STATEFUL_TIMEOUT: Duration = Duration::from_secs(30);
/// The token's initial usage limit and maximum usage period (§6.5.2.1, USB).
const TOKEN_INITIAL: Duration = Duration::from_secs(30);
const TOKEN_MAX: Duration = Duration::from_secs(600);

// Status codes (CTAP 2.1 §8.2).
const OK: u8 = 0x00;
const INVALID_PARAMETER: u8 = 0x02;
const INVALID_LENGTH: u8 = 0x03;
const INVALID_SEQ: u8 = 0x04;
const MISSING_PARAMETER: u8 = 0x14;
const LARGE_BLOB_STORAGE_FULL: u8 = 0x18;
const PIN_AUTH_INVALID: u8 = 0x33;
const PUAT_REQUIRED: u8 = 0x36;
const INTEGRITY_FAILURE: u8 = 0x3d;

fn int(i: u64) -> Value {
    Value::Integer(i.into())
}

/// A CTAP request: the command byte, then the parameters as a CBOR map.
fn request(command: u8, params: Vec<(Value, Value)>) -> Vec<u8> {
    let mut v = vec![command];
    ciborium::into_writer(&Value::Map(params), &mut v).expect("CBOR into a Vec");
    v
}

/// A successful response's map (status 0, then CBOR).
fn response_map(resp: &[u8]) -> Vec<(Value, Value)> {
    assert_eq!(resp[0], OK, "status");
    let v: Value = ciborium::from_reader(&resp[1..]).expect("CBOR");
    v.into_map().expect("a map")
}

fn member(m: &[(Value, Value)], key: u64) -> Option<&Value> {
    m.iter()
        .find(|(k, _)| k.as_integer() == Some(key.into()))
        .map(|(_, v)| v)
}

fn protocol_number(p: Protocol) -> u64 {
    match p {
        Protocol::One => 1,
        Protocol::Two => 2,
    }
}

/// An array with its trailer, LEFT(SHA-256(array), 16).
fn with_trailer(mut array: Vec<u8>) -> Vec<u8> {
    let h = sha256(&array);
    array.extend_from_slice(&h[..TRAILER]);
    array
}

/// How a fragment is authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Right,
    /// The right message under another token value.
    Wrong,
    /// No pinUvAuthParam.
    NoParam,
    /// A pinUvAuthParam without its protocol.
    NoProtocol,
    /// Protocol 3.
    BadProtocol,
}

impl Auth {
    fn from(b: u8) -> Auth {
        match b % 8 {
            0..=3 => Auth::Right,
            4 => Auth::Wrong,
            5 => Auth::NoParam,
            6 => Auth::NoProtocol,
            _ => Auth::BadProtocol,
        }
    }
}

/// The PIN token the harness got, and what the key must think of it.
struct Token {
    protocol: Protocol,
    value: Vec<u8>,
    issued: Instant,
    used: bool,
    /// Ended by its timer (or a power cycle): no pinUvAuthParam verifies any more.
    dead: bool,
}

/// The write in progress (§6.10.2 expectedLength / expectedNextOffset).
struct Pending {
    buffer: Vec<u8>,
    expected: usize,
    deadline: Instant,
}

struct Harness {
    key: Authenticator,
    clock: FakeClock,
    /// The array the key must hold.
    stored: Vec<u8>,
    pending: Option<Pending>,
    token: Option<Token>,
}

impl Harness {
    fn new(protected: bool, protocol: Protocol) -> Harness {
        let clock = FakeClock::default();
        let config = Config {
            clock: std::sync::Arc::new(clock.clone()),
            ..Config::default()
        };
        let key = fresh_key(config);
        let mut h = Harness {
            key,
            clock,
            stored: with_trailer(vec![0x80]),
            pending: None,
            token: None,
        };
        let info = response_map(&h.process(&[0x04]));
        let max_array = member(&info, 0x0b).and_then(Value::as_integer);
        assert_eq!(
            max_array,
            Some((MAX_ARRAY as u64).into()),
            "maxSerializedLargeBlobArray"
        );
        if protected {
            h.key.set_pin(b"1234", None).expect("PIN set");
            let value = h.lbw_token(protocol, b"1234");
            h.token = Some(Token {
                protocol,
                value,
                issued: h.clock_now(),
                used: false,
                dead: false,
            });
        }
        h
    }

    /// The platform's side of getPinUvAuthTokenUsingPinWithPermissions (§6.5.5.7.2)
    /// with the lbw permission: key agreement, then pinHashEnc, then the token decrypted.
    fn lbw_token(&mut self, protocol: Protocol, pin: &[u8]) -> Vec<u8> {
        let p = protocol_number(protocol);
        let ka =
            response_map(&self.process(&request(0x06, vec![(int(1), int(p)), (int(2), int(2))])));
        let peer = member(&ka, 1).expect("keyAgreement");
        let ours = KeyAgreement::new();
        let shared = ours.decapsulate(protocol, peer).expect("ECDH");
        let pin_hash_enc = protocol.encrypt(&shared, &sha256(pin)[..16]);
        let req = request(
            0x06,
            vec![
                (int(1), int(p)),
                (int(2), int(9)),
                (int(3), ours.public_cose()),
                (int(6), Value::Bytes(pin_hash_enc)),
                (int(9), int(0x10)),
            ],
        );
        let resp = response_map(&self.process(&req));
        let enc = member(&resp, 2)
            .and_then(Value::as_bytes)
            .expect("pinUvAuthToken");
        protocol
            .decrypt(&shared, enc)
            .expect("the token decrypts")
            .to_vec()
    }

    fn clock_now(&self) -> Instant {
        use vkey::ctap::Clock;
        self.clock.now()
    }

    fn process(&mut self, msg: &[u8]) -> Vec<u8> {
        let (ctx, _handle) = RequestContext::new();
        let resp = self.key.process(msg, &ctx);
        assert!(!resp.is_empty() && resp.len() <= MAX_MSG_SIZE);
        resp
    }

    /// Any command ends a write in progress unless it continues it (§6.3: one
    /// stateful command; vkey's reading for largeBlobs, see the README).
    fn other_command(&mut self) {
        let resp = self.process(&[0x04]);
        assert_eq!(resp[0], OK);
        self.pending = None;
    }

    fn get(&mut self, offset: u64, length: u64) {
        let req = request(
            LARGE_BLOBS,
            vec![(int(1), int(length)), (int(3), int(offset))],
        );
        let resp = self.process(&req);
        self.pending = None;
        let expect = if length > MAX_FRAGMENT as u64 {
            INVALID_LENGTH
        } else if offset > self.stored.len() as u64 {
            INVALID_PARAMETER
        } else {
            OK
        };
        assert_eq!(resp[0], expect, "get {length} at {offset}");
        if expect == OK {
            let map = response_map(&resp);
            let config = member(&map, 1).and_then(Value::as_bytes).expect("config");
            let start = offset as usize;
            let end = self.stored.len().min(start + length as usize);
            assert_eq!(
                config[..],
                self.stored[start..end],
                "get {length} at {offset}"
            );
        }
    }

    /// One set; returns whether it succeeded. The model is §6.10.2 step 5, in order.
    fn set(&mut self, offset: u64, fragment: &[u8], length: Option<u64>, auth: Auth) -> bool {
        let mut params = vec![
            (int(2), Value::Bytes(fragment.to_vec())),
            (int(3), int(offset)),
        ];
        if let Some(l) = length {
            params.push((int(4), int(l)));
        }
        if let Some(t) = &self.token {
            let mut message = vec![0xff; 32];
            message.extend_from_slice(&[0x0c, 0x00]);
            message.extend_from_slice(&(offset as u32).to_le_bytes());
            message.extend_from_slice(&sha256(fragment));
            let proto = protocol_number(t.protocol);
            let param = match auth {
                Auth::Wrong => t.protocol.authenticate(&[0x55; 32], &message),
                _ => t.protocol.authenticate(&t.value, &message),
            };
            if auth != Auth::NoParam {
                params.push((int(5), Value::Bytes(param)));
            }
            match auth {
                Auth::NoProtocol => {}
                Auth::BadProtocol => params.push((int(6), int(3))),
                _ => params.push((int(6), int(proto))),
            }
        }
        let resp = self.process(&request(LARGE_BLOBS, params));
        let expect = self.model_set(offset, fragment, length, auth);
        assert_eq!(
            resp,
            [expect],
            "set of {} bytes at {offset}, length {length:?}",
            fragment.len()
        );
        expect == OK
    }

    fn model_set(&mut self, offset: u64, fragment: &[u8], length: Option<u64>, auth: Auth) -> u8 {
        let now = self.clock_now();
        let pending = self.pending.take().filter(|p| now <= p.deadline);
        match self.model_step(pending, offset, fragment, length, auth, now) {
            Ok(Some(p)) => {
                self.pending = Some(p);
                OK
            }
            Ok(None) => OK,
            Err(status) => status,
        }
    }

    fn model_step(
        &mut self,
        pending: Option<Pending>,
        offset: u64,
        fragment: &[u8],
        length: Option<u64>,
        auth: Auth,
        now: Instant,
    ) -> Result<Option<Pending>, u8> {
        // a.
        if fragment.len() > MAX_FRAGMENT {
            return Err(INVALID_LENGTH);
        }
        // b, c.
        let mut pending = if offset == 0 {
            let l = length.ok_or(INVALID_PARAMETER)?;
            if l > MAX_ARRAY as u64 {
                return Err(LARGE_BLOB_STORAGE_FULL);
            }
            if l < 17 {
                return Err(INVALID_PARAMETER);
            }
            Pending {
                buffer: Vec::new(),
                expected: l as usize,
                deadline: now,
            }
        } else {
            if length.is_some() {
                return Err(INVALID_PARAMETER);
            }
            pending.ok_or(INVALID_SEQ)?
        };
        // d.
        if offset != pending.buffer.len() as u64 {
            return Err(INVALID_SEQ);
        }
        // e.
        if let Some(t) = &mut self.token {
            match auth {
                Auth::NoParam => return Err(PUAT_REQUIRED),
                Auth::NoProtocol => return Err(MISSING_PARAMETER),
                Auth::BadProtocol => return Err(INVALID_PARAMETER),
                Auth::Right | Auth::Wrong => {}
            }
            // The usage timer runs when the token is verified.
            let age = now.saturating_duration_since(t.issued);
            if age > TOKEN_MAX || (!t.used && age > TOKEN_INITIAL) {
                t.dead = true;
            }
            if t.dead || auth == Auth::Wrong {
                return Err(PIN_AUTH_INVALID);
            }
            t.used = true;
        }
        // f.
        if pending.buffer.len() + fragment.len() > pending.expected {
            return Err(INVALID_PARAMETER);
        }
        // g–i.
        pending.buffer.extend_from_slice(fragment);
        // j.
        if pending.buffer.len() == pending.expected {
            let (array, trailer) = pending.buffer.split_at(pending.expected - TRAILER);
            if sha256(array)[..TRAILER] != *trailer {
                return Err(INTEGRITY_FAILURE);
            }
            self.stored = pending.buffer;
            return Ok(None);
        }
        // k.
        pending.deadline = now + STATEFUL_TIMEOUT;
        Ok(Some(pending))
    }

    fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
    }

    fn power_cycle(&mut self) {
        self.key.power_up();
        self.pending = None;
        if let Some(t) = &mut self.token {
            t.dead = true;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let head = input.u8();
    let protocol = if head & 2 == 0 {
        Protocol::Two
    } else {
        Protocol::One
    };
    let mut h = Harness::new(head & 1 == 1, protocol);
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        match input.u8() % 8 {
            0 => {
                let wide = input.u8();
                let (offset, length) = (u64::from(input.u16()), u64::from(input.u16()));
                let offset = if wide & 1 == 0 {
                    offset % (h.stored.len() as u64 + 2)
                } else {
                    offset
                };
                let length = if wide & 2 == 0 { length % 1024 } else { length };
                h.get(offset, length);
            }
            1 | 2 => {
                // A whole array, in fragments of one size, trailer right or broken.
                let n = usize::from(input.u16()) % (MAX_ARRAY + 64);
                let chunk = 1 + usize::from(input.u16()) % (MAX_FRAGMENT + 32);
                let (corrupt, auth) = (input.u8(), Auth::from(input.u8()));
                let payload = input.bytes(n.min(2048));
                let mut array = with_trailer(
                    (0..n)
                        .map(|i| payload.get(i).copied().unwrap_or(i as u8))
                        .collect(),
                );
                if corrupt % 4 == 0 {
                    let i = usize::from(corrupt) % array.len();
                    array[i] ^= 0x01;
                }
                let total = array.len() as u64;
                for (i, part) in array.chunks(chunk).enumerate() {
                    let offset = (i * chunk) as u64;
                    let length = (offset == 0).then_some(total);
                    if !h.set(offset, part, length, auth) {
                        break;
                    }
                }
            }
            3 | 4 => {
                // One fragment, at a chosen offset, with a chosen length.
                let how = input.u8();
                let next = h.pending.as_ref().map_or(0, |p| p.buffer.len() as u64);
                let offset = match how % 4 {
                    0 | 1 => next,
                    2 => 0,
                    _ => u64::from(input.u16()),
                };
                let size = usize::from(input.u16()) % (MAX_FRAGMENT + 32);
                let data = input.bytes(size.min(256));
                let fragment: Vec<u8> = (0..size)
                    .map(|i| data.get(i).copied().unwrap_or(i as u8))
                    .collect();
                let length = match (how >> 2) % 4 {
                    0 => None,
                    1 => Some(u64::from(input.u16())),
                    2 => Some(fragment.len() as u64),
                    _ => Some(u64::from(input.u16()) * 4),
                };
                let length = if offset == 0 && how & 0x40 == 0 {
                    length.or(Some(17))
                } else {
                    length
                };
                h.set(offset, &fragment, length, Auth::from(input.u8()));
            }
            5 => h.other_command(),
            6 => h.advance(Duration::from_millis(u64::from(input.u8()) * 250)),
            _ => {
                if input.u8() % 4 == 0 {
                    h.power_cycle();
                }
            }
        }
    }
    // Whatever happened, the array the key holds is the model's.
    let len = h.stored.len() as u64;
    let mut offset = 0;
    while offset <= len {
        h.get(offset, 4096);
        offset += 4096;
    }
});
