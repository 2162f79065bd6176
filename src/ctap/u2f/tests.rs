//! U2F driven with plain APDU bytes, and its interplay with CTAP2.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciborium::Value;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};

use super::super::*;
use crate::crypto::sha256;
use crate::store::Store;

const CHALLENGE: [u8; 32] = [0xc1; 32];

fn app(appid: &str) -> [u8; 32] {
    sha256(appid.as_bytes())
}

/// Records what the key tells its observers.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Key {
    auth: Authenticator,
    clock: FakeClock,
    events: Arc<Recorder>,
}

fn key_with(config: Config) -> Key {
    let clock = FakeClock::default();
    let events = Arc::new(Recorder::default());
    let auth = Authenticator::new(
        Store::ephemeral(),
        Config {
            clock: Arc::new(clock.clone()),
            events: events.clone(),
            ..config
        },
    )
    .unwrap();
    Key {
        auth,
        clock,
        events,
    }
}

fn key() -> Key {
    key_with(Config::default())
}

fn presence(mode: PresenceMode) -> Config {
    Config {
        presence: Presence::new(mode),
        ..Config::default()
    }
}

/// Sends one APDU: (data, status word).
fn send(a: &mut Authenticator, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = a.process_u2f(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

/// An extended-length APDU, as python-fido2 writes it (Lc, data, Le 00 00).
fn extended(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, ins, p1, 0x00, 0x00];
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v.extend_from_slice(&[0, 0]);
    v
}

/// A short APDU with Le 00.
fn short(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, ins, p1, 0x00, data.len() as u8];
    v.extend_from_slice(data);
    v.push(0);
    v
}

fn register_data(app: &[u8; 32]) -> Vec<u8> {
    [&CHALLENGE[..], app].concat()
}

fn authenticate_data(app: &[u8; 32], kh: &[u8]) -> Vec<u8> {
    [&CHALLENGE[..], app, &[kh.len() as u8], kh].concat()
}

const OK: u16 = 0x9000;
const NOT_SATISFIED: u16 = 0x6985;
const NOT_ALLOWED: u16 = 0x6986;
const WRONG_DATA: u16 = 0x6a80;
const WRONG_LENGTH: u16 = 0x6700;
const CLA: u16 = 0x6e00;
const INS: u16 = 0x6d00;

struct Registration {
    public_key: Vec<u8>,
    key_handle: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

fn parse_registration(d: &[u8]) -> Registration {
    assert_eq!(d[0], 0x05);
    let public_key = d[1..66].to_vec();
    let n = d[66] as usize;
    let key_handle = d[67..67 + n].to_vec();
    let rest = &d[67 + n..];
    let cert_len = super::describe::der_length(rest).unwrap();
    Registration {
        public_key,
        key_handle,
        certificate: rest[..cert_len].to_vec(),
        signature: rest[cert_len..].to_vec(),
    }
}

fn verify(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let sig = Signature::from_der(sig).unwrap();
    vk.verify(msg, &sig).is_ok()
}

/// The public key (SEC1) in a certificate.
fn cert_public_key(der: &[u8]) -> Vec<u8> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

fn register(a: &mut Authenticator, appid: &str) -> Registration {
    let (d, sw) = send(a, &extended(0x01, 0x00, &register_data(&app(appid))));
    assert_eq!(sw, OK);
    parse_registration(&d)
}

/// (user presence, counter, signature) of a signed authentication.
fn authenticate(a: &mut Authenticator, p1: u8, appid: &str, kh: &[u8]) -> (u8, u32, Vec<u8>) {
    let (d, sw) = send(a, &extended(0x02, p1, &authenticate_data(&app(appid), kh)));
    assert_eq!(sw, OK, "authenticate p1={p1:#04x}");
    (
        d[0],
        u32::from_be_bytes(d[1..5].try_into().unwrap()),
        d[5..].to_vec(),
    )
}

fn signed_by_authenticate(appid: &str, up: u8, counter: u32) -> Vec<u8> {
    [&app(appid)[..], &[up], &counter.to_be_bytes(), &CHALLENGE].concat()
}

#[test]
fn version_in_every_encoding() {
    let mut k = key();
    for apdu in [
        &[0x00, 0x03, 0x00, 0x00][..],                           // header only
        &[0x00, 0x03, 0x00, 0x00, 0x00],                         // short, Le 256
        &[0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00],             // extended Le (libfido2)
        &[0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // python-fido2
    ] {
        assert_eq!(
            send(&mut k.auth, apdu),
            (b"U2F_V2".to_vec(), OK),
            "{apdu:02x?}"
        );
    }
    // U2F_VERSION takes no data.
    assert_eq!(send(&mut k.auth, &extended(0x03, 0, b"x")).1, WRONG_LENGTH);
}

#[test]
fn every_status_word_where_it_belongs() {
    let mut k = key();
    let a = app("https://example.com");
    let sw = |k: &mut Key, apdu: &[u8]| send(&mut k.auth, apdu).1;
    // CLA other than 0, unknown and vendor INS, malformed APDUs.
    assert_eq!(sw(&mut k, &[0x80, 0x03, 0, 0]), CLA);
    assert_eq!(sw(&mut k, &extended(0x04, 0, &[])), INS);
    assert_eq!(sw(&mut k, &extended(0x40, 0, &[1, 2])), INS);
    assert_eq!(sw(&mut k, &[0x00, 0x01]), WRONG_LENGTH);
    assert_eq!(sw(&mut k, &[]), WRONG_LENGTH);
    assert_eq!(
        sw(&mut k, &[0x00, 0x01, 0, 0, 0x00, 0x00, 0x40, 1, 2]),
        WRONG_LENGTH
    );
    // Register: exactly 64 bytes.
    assert_eq!(sw(&mut k, &extended(0x01, 0, &[0; 63])), WRONG_LENGTH);
    assert_eq!(sw(&mut k, &extended(0x01, 0, &[0; 65])), WRONG_LENGTH);
    assert_eq!(sw(&mut k, &extended(0x01, 0, &[])), WRONG_LENGTH);
    // Authenticate: L must match the key handle's length; the control byte must be known.
    let r = register(&mut k.auth, "https://example.com");
    let mut data = authenticate_data(&a, &r.key_handle);
    data.push(0);
    assert_eq!(sw(&mut k, &extended(0x02, 0x03, &data)), WRONG_LENGTH);
    assert_eq!(sw(&mut k, &extended(0x02, 0x03, &data[..64])), WRONG_LENGTH);
    let data = authenticate_data(&a, &r.key_handle);
    assert_eq!(sw(&mut k, &extended(0x02, 0x05, &data)), WRONG_DATA);
    // Check-only: "success" is SW_CONDITIONS_NOT_SATISFIED; not ours is SW_WRONG_DATA.
    assert_eq!(sw(&mut k, &extended(0x02, 0x07, &data)), NOT_SATISFIED);
    let other = authenticate_data(&app("https://other.example"), &r.key_handle);
    assert_eq!(sw(&mut k, &extended(0x02, 0x07, &other)), WRONG_DATA);
    assert_eq!(sw(&mut k, &extended(0x02, 0x03, &other)), WRONG_DATA);
    let mut forged = r.key_handle.clone();
    forged[10] ^= 1;
    let forged = authenticate_data(&a, &forged);
    assert_eq!(sw(&mut k, &extended(0x02, 0x07, &forged)), WRONG_DATA);
    assert_eq!(sw(&mut k, &extended(0x02, 0x08, &forged)), WRONG_DATA);
    let empty = authenticate_data(&a, &[]);
    assert_eq!(sw(&mut k, &extended(0x02, 0x03, &empty)), WRONG_DATA);
    let long = authenticate_data(&a, &[7; 255]);
    assert_eq!(sw(&mut k, &extended(0x02, 0x03, &long)), WRONG_DATA);
}

#[test]
fn register_and_authenticate_in_three_modes_short_and_extended() {
    let mut k = key();
    let appid = "https://example.com/app-id.json";
    for encode in [extended, short] {
        let (d, sw) = send(
            &mut k.auth,
            &encode(0x01, 0x03, &register_data(&app(appid))),
        );
        assert_eq!(sw, OK);
        let r = parse_registration(&d);
        assert_eq!(r.key_handle.len(), 64);
        assert_eq!(r.public_key[0], 0x04);
        // fido-u2f: signed by the batch certificate's key over
        // 0x00 ‖ application ‖ challenge ‖ key handle ‖ public key.
        let a = k.auth.attestation.as_ref().unwrap();
        assert_eq!(r.certificate, a.batch_cert_der);
        let signed = [
            &[0u8][..],
            &app(appid),
            &CHALLENGE,
            &r.key_handle,
            &r.public_key,
        ]
        .concat();
        assert!(verify(
            &cert_public_key(&r.certificate),
            &signed,
            &r.signature
        ));

        let data = authenticate_data(&app(appid), &r.key_handle);
        let (d, sw) = send(&mut k.auth, &encode(0x02, 0x03, &data));
        assert_eq!(sw, OK);
        let (up, counter) = (d[0], u32::from_be_bytes(d[1..5].try_into().unwrap()));
        assert_eq!((up, counter), (1, 1));
        assert!(verify(
            &r.public_key,
            &signed_by_authenticate(appid, 1, 1),
            &d[5..]
        ));

        assert_eq!(
            send(&mut k.auth, &encode(0x02, 0x07, &data)),
            (vec![], NOT_SATISFIED)
        );

        let (d, sw) = send(&mut k.auth, &encode(0x02, 0x08, &data));
        assert_eq!(sw, OK);
        assert_eq!(
            (d[0], u32::from_be_bytes(d[1..5].try_into().unwrap())),
            (0, 2)
        );
        assert!(verify(
            &r.public_key,
            &signed_by_authenticate(appid, 0, 2),
            &d[5..]
        ));
    }
}

#[test]
fn self_and_none_attestation_use_a_self_signed_certificate_of_the_new_key() {
    for format in [AttestationFormat::SelfAttestation, AttestationFormat::None] {
        let mut k = key_with(Config {
            attestation: format,
            ..Config::default()
        });
        let r = register(&mut k.auth, "https://example.com");
        assert_eq!(cert_public_key(&r.certificate), r.public_key);
        let signed = [
            &[0u8][..],
            &app("https://example.com"),
            &CHALLENGE,
            &r.key_handle,
            &r.public_key,
        ]
        .concat();
        assert!(verify(&r.public_key, &signed, &r.signature));
        let batch = &k.auth.attestation.as_ref().unwrap().batch_cert_der;
        assert_ne!(&r.certificate, batch);
    }
}

fn cbor_map(entries: Vec<(i64, Value)>) -> Vec<u8> {
    let m = entries
        .into_iter()
        .map(|(k, v)| (Value::Integer(k.into()), v))
        .collect();
    cbor::encode(&Value::Map(m))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn ctap2(a: &mut Authenticator, cmd: u8, params: Vec<u8>) -> Result<Value, u8> {
    let (ctx, _h) = RequestContext::new();
    let r = a.process(&[&[cmd][..], &params].concat(), &ctx);
    if r[0] != 0 {
        return Err(r[0]);
    }
    Ok(if r.len() == 1 {
        Value::Null
    } else {
        cbor::decode(&r[1..]).unwrap()
    })
}

fn member(v: &Value, key: i64) -> &Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(key.into()))
        .map(|(_, v)| v)
        .unwrap()
}

fn descriptor(id: &[u8]) -> Value {
    Value::Map(vec![
        (text("type"), text("public-key")),
        (text("id"), Value::Bytes(id.to_vec())),
    ])
}

fn get_assertion(a: &mut Authenticator, rp_id: &str, id: &[u8]) -> Result<Value, u8> {
    let params = cbor_map(vec![
        (1, text(rp_id)),
        (2, Value::Bytes(CHALLENGE.to_vec())),
        (3, Value::Array(vec![descriptor(id)])),
    ]);
    ctap2(a, 0x02, params)
}

fn make_credential(
    a: &mut Authenticator,
    rp_id: &str,
    alg: i64,
    extensions: Option<Value>,
) -> Vec<u8> {
    let user = Value::Map(vec![
        (text("id"), Value::Bytes(b"user-1".to_vec())),
        (text("name"), text("alice")),
    ]);
    let params = Value::Array(vec![Value::Map(vec![
        (text("alg"), Value::Integer(alg.into())),
        (text("type"), text("public-key")),
    ])]);
    let mut m = vec![
        (1, Value::Bytes(CHALLENGE.to_vec())),
        (2, Value::Map(vec![(text("id"), text(rp_id))])),
        (3, user),
        (4, params),
    ];
    if let Some(e) = extensions {
        m.push((6, e));
    }
    let r = ctap2(a, 0x01, cbor_map(m)).unwrap();
    let ad = member(&r, 2).as_bytes().unwrap().clone();
    let n = u16::from_be_bytes([ad[53], ad[54]]) as usize;
    ad[55..55 + n].to_vec()
}

/// (flags, counter) of an assertion, after checking its signature with `public_key`.
fn check_assertion(r: &Value, rp_id: &str, public_key: &[u8]) -> (u8, u32) {
    let ad = member(r, 2).as_bytes().unwrap();
    assert_eq!(&ad[..32], &app(rp_id));
    let sig = member(r, 3).as_bytes().unwrap();
    assert!(verify(public_key, &[&ad[..], &CHALLENGE].concat(), sig));
    (ad[32], u32::from_be_bytes(ad[33..37].try_into().unwrap()))
}

#[test]
fn a_u2f_registration_is_a_ctap2_credential_for_the_appid() {
    let mut k = key();
    let appid = "https://example.com/u2f-app-id.json";
    let r = register(&mut k.auth, appid);
    assert_eq!(authenticate(&mut k.auth, 0x03, appid, &r.key_handle).1, 1);
    // The appid extension: the platform sends the appid as the RP ID.
    let a = get_assertion(&mut k.auth, appid, &r.key_handle).unwrap();
    assert_eq!(check_assertion(&a, appid, &r.public_key), (0x01, 2));
    // Not for another RP ID (the RP's own), so the platform's swap is needed.
    assert_eq!(
        get_assertion(&mut k.auth, "example.com", &r.key_handle),
        Err(0x2e)
    );
    // One counter, both protocols.
    let (up, counter, sig) = authenticate(&mut k.auth, 0x03, appid, &r.key_handle);
    assert_eq!((up, counter), (1, 3));
    assert!(verify(
        &r.public_key,
        &signed_by_authenticate(appid, 1, 3),
        &sig
    ));
    // makeCredential excludes it for that RP ID too.
    let exclude = cbor_map(vec![
        (1, Value::Bytes(CHALLENGE.to_vec())),
        (2, Value::Map(vec![(text("id"), text(appid))])),
        (
            3,
            Value::Map(vec![(text("id"), Value::Bytes(b"u".to_vec()))]),
        ),
        (
            4,
            Value::Array(vec![Value::Map(vec![
                (text("alg"), Value::Integer((-7).into())),
                (text("type"), text("public-key")),
            ])]),
        ),
        (5, Value::Array(vec![descriptor(&r.key_handle)])),
    ]);
    assert_eq!(ctap2(&mut k.auth, 0x01, exclude), Err(0x19));
}

#[test]
fn a_ctap2_es256_credential_signs_over_u2f() {
    let mut k = key();
    let id = make_credential(&mut k.auth, "example.com", -7, None);
    // Its public key, from an assertion's signature check below.
    let (up, counter, sig) = authenticate(&mut k.auth, 0x03, "example.com", &id);
    assert_eq!((up, counter), (1, 1));
    let a = get_assertion(&mut k.auth, "example.com", &id).unwrap();
    let ad = member(&a, 2).as_bytes().unwrap();
    assert_eq!(u32::from_be_bytes(ad[33..37].try_into().unwrap()), 2);
    // The same key signed both: recover it from the stored source.
    let src = k.auth.find_credential(&app("example.com"), &id).unwrap();
    let CredentialKeyForTest(pk) = public_key_of(&src);
    assert!(verify(
        &pk,
        &signed_by_authenticate("example.com", 1, 1),
        &sig
    ));
    check_assertion(&a, "example.com", &pk);
    // Check-only knows it; another application does not.
    let data = authenticate_data(&app("example.com"), &id);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x07, &data)).1,
        NOT_SATISFIED
    );
    let data = authenticate_data(&app("example.org"), &id);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x07, &data)).1,
        WRONG_DATA
    );
}

struct CredentialKeyForTest(Vec<u8>);

fn public_key_of(src: &super::super::credential_id::CredentialSource) -> CredentialKeyForTest {
    match src.key().unwrap() {
        crate::crypto::CredentialKey::Es256(k) => CredentialKeyForTest(k.public_point().to_vec()),
        crate::crypto::CredentialKey::EdDsa(_) => panic!("not ES256"),
    }
}

#[test]
fn eddsa_and_uv_only_credentials_are_not_usable_over_u2f() {
    let mut k = key();
    let ed = make_credential(&mut k.auth, "example.com", -8, None);
    let data = authenticate_data(&app("example.com"), &ed);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x07, &data)).1,
        WRONG_DATA
    );
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x03, &data)).1,
        WRONG_DATA
    );
    // credProtect 3 (userVerificationRequired): U2F cannot verify the user.
    let cp = Value::Map(vec![(text("credProtect"), Value::Integer(3.into()))]);
    let protected = make_credential(&mut k.auth, "example.com", -7, Some(cp));
    let data = authenticate_data(&app("example.com"), &protected);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x07, &data)).1,
        WRONG_DATA
    );
    // credProtect 2 (with the credential ID list): the key handle is named, so it works.
    let cp = Value::Map(vec![(text("credProtect"), Value::Integer(2.into()))]);
    let listed = make_credential(&mut k.auth, "example.com", -7, Some(cp));
    assert_eq!(authenticate(&mut k.auth, 0x03, "example.com", &listed).1, 1);
}

#[test]
fn deny_never_gives_the_touch_but_dont_enforce_and_check_only_work() {
    let mut k = key();
    let r = register(&mut k.auth, "a");
    k.auth.config.presence.set_mode(PresenceMode::Deny);
    let reg = extended(0x01, 0, &register_data(&app("a")));
    for _ in 0..3 {
        assert_eq!(send(&mut k.auth, &reg), (vec![], NOT_SATISFIED));
    }
    let data = authenticate_data(&app("a"), &r.key_handle);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x03, &data)).1,
        NOT_SATISFIED
    );
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x07, &data)).1,
        NOT_SATISFIED
    );
    assert_eq!(authenticate(&mut k.auth, 0x08, "a", &r.key_handle).0, 0);
    assert_eq!(k.auth.config.presence.pending(), None);
}

#[test]
fn manual_touch_is_asked_once_approved_then_taken_by_the_next_request() {
    let mut k = key_with(presence(PresenceMode::Manual));
    let reg = extended(0x01, 0, &register_data(&app("a")));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    let pending = k
        .auth
        .config
        .presence
        .pending()
        .expect("a touch request waits");
    assert_eq!(pending.command, "U2F_REGISTER");
    // It does not block the authenticator: control jobs need not wait for it.
    assert_eq!(k.auth.config.presence.blocking(), None);
    // Polling again is the same request, not a new one.
    k.clock.advance(Duration::from_millis(200));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    assert_eq!(k.auth.config.presence.pending().unwrap().id, pending.id);
    let asked: Vec<u64> = k
        .events
        .take()
        .into_iter()
        .filter_map(|e| match e {
            Event::PresenceRequested { id, waits, .. } => {
                assert!(waits);
                Some(id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![pending.id]);

    assert_eq!(
        k.auth.config.presence.answer(Some(pending.id), true),
        Ok(pending.id)
    );
    assert_eq!(k.auth.config.presence.pending(), None);
    k.clock.advance(Duration::from_secs(9));
    let (d, sw) = send(&mut k.auth, &reg);
    assert_eq!(sw, OK);
    let r = parse_registration(&d);
    // Taken: the next request asks again.
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    let second = k.auth.config.presence.pending().unwrap();
    assert!(second.id > pending.id);

    // An approval older than the window is not a touch for the next request.
    k.auth.config.presence.answer(None, true).unwrap();
    k.clock
        .advance(presence::POLLED_TOUCH_WINDOW + Duration::from_millis(1));
    let data = authenticate_data(&app("a"), &r.key_handle);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x03, &data)).1,
        NOT_SATISFIED
    );
    let third = k.auth.config.presence.pending().unwrap();
    assert_eq!(third.command, "U2F_AUTHENTICATE");
    // A denial: not given (the poll that finds it asks nothing); the next poll asks anew.
    k.auth
        .config
        .presence
        .answer(Some(third.id), false)
        .unwrap();
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x03, &data)).1,
        NOT_SATISFIED
    );
    assert_eq!(k.auth.config.presence.pending(), None);
    assert_eq!(
        send(&mut k.auth, &extended(0x02, 0x03, &data)).1,
        NOT_SATISFIED
    );
    let fourth = k.auth.config.presence.pending().unwrap();
    assert!(fourth.id > third.id);
    // An approval given while the client polls for another command counts for it.
    k.auth
        .config
        .presence
        .answer(Some(fourth.id), true)
        .unwrap();
    assert_eq!(authenticate(&mut k.auth, 0x03, "a", &r.key_handle).0, 1);
}

#[test]
fn a_polled_request_lapses_when_the_client_stops_asking() {
    let mut k = key_with(presence(PresenceMode::Manual));
    let reg = extended(0x01, 0, &register_data(&app("a")));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    let first = k.auth.config.presence.pending().unwrap();
    k.clock
        .advance(presence::USER_PRESENCE_TIMEOUT + Duration::from_secs(1));
    assert_eq!(k.auth.config.presence.pending(), None);
    assert_eq!(
        k.auth.config.presence.answer(Some(first.id), true),
        Err(AnswerError::NoneWaiting)
    );
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    assert!(k.auth.config.presence.pending().unwrap().id > first.id);
    // A power cycle withdraws it.
    k.auth.power_up();
    assert_eq!(k.auth.config.presence.pending(), None);
}

#[test]
fn delay_gives_the_touch_after_the_delay_for_the_window() {
    let mut k = key_with(presence(PresenceMode::Delay(Duration::from_millis(500))));
    let reg = extended(0x01, 0, &register_data(&app("a")));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    // A delay is not answered from outside: nothing pending, but it was asked.
    assert_eq!(k.auth.config.presence.pending(), None);
    assert!(k.events.take().iter().any(|e| matches!(
        e,
        Event::PresenceRequested {
            command: "U2F_REGISTER",
            waits: false,
            ..
        }
    )));
    k.clock.advance(Duration::from_millis(300));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    k.clock.advance(Duration::from_millis(300));
    assert_eq!(send(&mut k.auth, &reg).1, OK);
    // Taken; the next one waits its own delay, and a touch left too long lapses.
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    k.clock.advance(
        Duration::from_millis(500) + presence::POLLED_TOUCH_WINDOW + Duration::from_millis(1),
    );
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    k.clock.advance(Duration::from_millis(500));
    assert_eq!(send(&mut k.auth, &reg).1, OK);
}

#[test]
fn switching_the_mode_asks_again_under_the_new_one() {
    let mut k = key_with(presence(PresenceMode::Manual));
    let reg = extended(0x01, 0, &register_data(&app("a")));
    assert_eq!(send(&mut k.auth, &reg).1, NOT_SATISFIED);
    assert!(k.auth.config.presence.pending().is_some());
    k.auth.config.presence.set_mode(PresenceMode::Auto);
    assert_eq!(send(&mut k.auth, &reg).1, OK);
    assert_eq!(k.auth.config.presence.pending(), None);
}

#[test]
fn always_uv_switches_u2f_off() {
    let mut k = key();
    let r = register(&mut k.auth, "a");
    let versions = |k: &mut Key| {
        let info = ctap2(&mut k.auth, 0x04, vec![]).unwrap();
        member(&info, 1).as_array().unwrap().clone()
    };
    assert_eq!(versions(&mut k)[0], text("U2F_V2"));
    assert!(k.auth.store.toggle_always_uv().unwrap());
    assert!(!versions(&mut k).contains(&text("U2F_V2")));
    let data = authenticate_data(&app("a"), &r.key_handle);
    for apdu in [
        extended(0x03, 0, &[]),
        extended(0x01, 0, &register_data(&app("a"))),
        extended(0x02, 0x03, &data),
        extended(0x02, 0x07, &data),
        extended(0x02, 0x08, &data),
    ] {
        assert_eq!(send(&mut k.auth, &apdu), (vec![], NOT_ALLOWED));
    }
    assert!(!k.auth.store.toggle_always_uv().unwrap());
    assert_eq!(send(&mut k.auth, &extended(0x03, 0, &[])).1, OK);
}

#[test]
fn no_u2f_serves_nothing_and_get_info_says_so() {
    let mut k = key_with(Config {
        u2f: false,
        ..Config::default()
    });
    assert!(!k.auth.u2f_enabled());
    assert_eq!(send(&mut k.auth, &extended(0x03, 0, &[])), (vec![], INS));
    let info = ctap2(&mut k.auth, 0x04, vec![]).unwrap();
    assert_eq!(
        member(&info, 1),
        &Value::Array(vec![text("FIDO_2_0"), text("FIDO_2_1")])
    );
}

#[test]
fn events_name_the_credential_and_its_counter() {
    let mut k = key();
    let r = register(&mut k.auth, "a");
    authenticate(&mut k.auth, 0x08, "a", &r.key_handle);
    let events = k.events.take();
    let added = events.iter().find_map(|e| match e {
        Event::CredentialAdded(c) => Some(c),
        _ => None,
    });
    let added = added.expect("credentialAdded");
    assert_eq!(added.credential_id, r.key_handle);
    assert!(!added.is_resident);
    assert_eq!(added.sign_count, 0);
    let asserted = events.iter().find_map(|e| match e {
        Event::CredentialAsserted(c) => Some(c),
        _ => None,
    });
    assert_eq!(asserted.expect("credentialAsserted").sign_count, 1);
}

#[test]
fn override_bits_apply_to_u2f_responses() {
    let mut k = key();
    let r = register(&mut k.auth, "a");
    k.auth.config.overrides.set(OverrideBits {
        is_bogus_signature: true,
        is_bad_uv: false,
        is_bad_up: true,
    });
    let (up, counter, sig) = authenticate(&mut k.auth, 0x03, "a", &r.key_handle);
    assert_eq!(up, 0);
    assert!(!verify(
        &r.public_key,
        &signed_by_authenticate("a", 0, counter),
        &sig
    ));
    let (d, _) = send(&mut k.auth, &extended(0x01, 0, &register_data(&app("b"))));
    let r2 = parse_registration(&d);
    let signed = [
        &[0u8][..],
        &app("b"),
        &CHALLENGE,
        &r2.key_handle,
        &r2.public_key,
    ]
    .concat();
    assert!(!verify(
        &cert_public_key(&r2.certificate),
        &signed,
        &r2.signature
    ));
}

#[test]
fn u2f_ends_a_stateful_command() {
    let mut k = key();
    // Two discoverable credentials for one RP: getAssertion leaves one for getNext.
    for user in [b"u1".to_vec(), b"u2".to_vec()] {
        let params = cbor_map(vec![
            (1, Value::Bytes(CHALLENGE.to_vec())),
            (2, Value::Map(vec![(text("id"), text("rp"))])),
            (3, Value::Map(vec![(text("id"), Value::Bytes(user))])),
            (
                4,
                Value::Array(vec![Value::Map(vec![
                    (text("alg"), Value::Integer((-7).into())),
                    (text("type"), text("public-key")),
                ])]),
            ),
            (7, Value::Map(vec![(text("rk"), Value::Bool(true))])),
        ]);
        ctap2(&mut k.auth, 0x01, params).unwrap();
    }
    let ga = cbor_map(vec![(1, text("rp")), (2, Value::Bytes(CHALLENGE.to_vec()))]);
    ctap2(&mut k.auth, 0x02, ga).unwrap();
    send(&mut k.auth, &extended(0x03, 0, &[]));
    assert_eq!(ctap2(&mut k.auth, 0x08, vec![]), Err(0x30));
}

#[test]
fn the_trace_names_fields_and_status_words() {
    let mut k = key();
    let req = extended(0x01, 0, &register_data(&app("a")));
    let resp = k.auth.process_u2f(&req);
    let t = trace::u2f_request(&req);
    assert_eq!(t.command_name, "U2F_REGISTER");
    let s = format!("{:?}", t.params);
    assert!(
        s.contains("applicationParameter") && s.contains("extended"),
        "{s}"
    );
    let r = trace::u2f_response(&req, &resp);
    assert_eq!(r.status_name, "SW_NO_ERROR");
    let s = format!("{:?}", r.body);
    assert!(
        s.contains("keyHandle") && s.contains("attestationCertificate"),
        "{s}"
    );
    let auth_req = extended(0x02, 0x07, &authenticate_data(&app("zz"), &[1, 2, 3]));
    let resp = k.auth.process_u2f(&auth_req);
    let t = trace::u2f_request(&auth_req);
    assert!(format!("{:?}", t.params).contains("check-only"));
    assert_eq!(
        trace::u2f_response(&auth_req, &resp).status_name,
        "SW_WRONG_DATA"
    );
    let t = trace::u2f_request(&[0x00, 0x01]);
    assert!(matches!(t.params, Some(trace::TraceValue::Text(_))));
    assert_eq!(
        trace::u2f_response(&[0, 3, 0, 0], &[0x69, 0x85]).status_name,
        "SW_CONDITIONS_NOT_SATISFIED"
    );
}

#[test]
fn random_apdus_never_panic() {
    // A cheap deterministic generator: every APDU shape around the length fields.
    let mut k = key_with(presence(PresenceMode::Manual));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 140) as usize;
        let mut apdu: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len > 1 && next() % 2 == 0 {
            apdu[0] = 0;
            apdu[1] = (next() % 4) as u8;
        }
        let resp = k.auth.process_u2f(&apdu);
        assert!(resp.len() >= 2);
        let _ = trace::u2f_request(&apdu);
        let _ = trace::u2f_response(&apdu, &resp);
    }
}

/// fixtures/u2f/apdus.tsv: APDUs as python-fido2 and libfido2 encode them (written by
/// fixtures/make_u2f_fixtures.py), each with the status word of a fresh key.
#[test]
fn apdu_fixtures() {
    let rows = super::super::tests::fixture_rows("u2f/apdus.tsv");
    for (name, apdu, expected) in &rows {
        let resp = key_with(Config::default()).auth.process_u2f(apdu);
        let (body, sw) = resp.split_at(resp.len() - 2);
        let sw = u16::from_be_bytes([sw[0], sw[1]]);
        assert_eq!(sw, *expected, "{name}: got {sw:#06x}");
        if sw != 0x9000 {
            assert!(body.is_empty(), "{name}");
        }
    }
    assert!(rows.len() >= 15);
}
