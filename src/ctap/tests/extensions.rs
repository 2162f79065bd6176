//! Extensions (CTAP 2.1 §12, CTAP 2.2 hmac-secret-mc) and authenticatorLargeBlobs
//! (§6.10) through plain byte messages, checked against what the spec computes.

use hmac::{KeyInit, Mac};

use super::*;
use crate::ctap::credential_id;
use crate::ctap::large_blobs::{INITIAL_ARRAY, MAX_FRAGMENT_LENGTH};
use crate::pin::{KeyAgreement, Protocol, SharedSecret};

/// Adds members to a request's top-level map.
fn with_members(req: Vec<u8>, extra: Vec<(Value, Value)>) -> Vec<u8> {
    let mut m = cbor::decode(&req[1..]).unwrap().into_map().unwrap();
    m.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    m.extend(extra);
    let mut out = vec![req[0]];
    out.extend_from_slice(&cbor::encode(&Value::Map(m)));
    out
}

fn ext(entries: Vec<(&str, Value)>) -> (Value, Value) {
    (
        i(6),
        map(entries.into_iter().map(|(k, v)| (t(k), v)).collect()),
    )
}

/// A makeCredential with extensions (member 6) and options.
fn mc_ext(rp: &str, user: &[u8], rk: bool, extensions: Vec<(&str, Value)>) -> Vec<u8> {
    with_members(mc_request(rp, user, -7, rk, &[]), vec![ext(extensions)])
}

/// A getAssertion with extensions (member 4).
fn ga_ext(rp: &str, allow: &[Vec<u8>], extensions: Vec<(&str, Value)>) -> Vec<u8> {
    let (_, e) = ext(extensions);
    with_members(ga_request(rp, allow, None), vec![(i(4), e)])
}

/// The extensions map of authenticator data, if the ED flag is set.
fn auth_data_extensions(ad: &[u8]) -> Option<Value> {
    let flags = ad[32];
    if flags & 0x80 == 0 {
        return None;
    }
    let mut rest = &ad[37..];
    if flags & 0x40 != 0 {
        let n = u16::from_be_bytes([rest[16], rest[17]]) as usize;
        rest = &rest[18 + n..];
        let _key: Value = ciborium::de::from_reader(&mut rest).unwrap();
    }
    Some(cbor::decode(rest).unwrap())
}

fn ext_output<'a>(extensions: &'a Option<Value>, name: &str) -> Option<&'a Value> {
    extensions.as_ref().and_then(|e| text_member(e, name))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// The platform's side of a PIN/UV auth protocol session: its key and the shared secret.
struct Platform {
    protocol: Protocol,
    key: KeyAgreement,
    shared: SharedSecret,
}

impl Platform {
    fn new(a: &mut Authenticator, protocol: Protocol) -> Platform {
        let version = match protocol {
            Protocol::One => 1,
            Protocol::Two => 2,
        };
        let req = [
            &[0x06][..],
            &cbor::encode(&map(vec![(i(1), i(version)), (i(2), i(2))])),
        ]
        .concat();
        let r = call(a, &req).unwrap();
        let key = KeyAgreement::new();
        let shared = key.decapsulate(protocol, member(&r, 1).unwrap()).unwrap();
        Platform {
            protocol,
            key,
            shared,
        }
    }

    /// The hmac-secret input for `salts` (32 or 64 bytes as the spec wants; other
    /// lengths test the errors), protocol member included for protocol 2 only.
    fn input(&self, salts: &[u8]) -> Value {
        let enc = self.protocol.encrypt(&self.shared, salts);
        self.input_raw(enc)
    }

    /// The input for an already-encrypted saltEnc, with a correct saltAuth.
    fn input_raw(&self, salt_enc: Vec<u8>) -> Value {
        let auth = self
            .protocol
            .authenticate(self.shared.hmac_key(), &salt_enc);
        let mut m = vec![
            (i(1), self.key.public_cose()),
            (i(2), b(&salt_enc)),
            (i(3), b(&auth)),
        ];
        if self.protocol == Protocol::Two {
            m.push((i(4), i(2)));
        }
        map(m)
    }

    fn decrypt(&self, out: &Value) -> Vec<u8> {
        self.protocol
            .decrypt(&self.shared, out.as_bytes().unwrap())
            .unwrap()
            .to_vec()
    }
}

/// What the spec says the outputs are for the credential `id` of `rp`.
fn expected_outputs(a: &Authenticator, rp: &str, id: &[u8], uv: bool, salts: &[u8]) -> Vec<u8> {
    let hash = crate::crypto::sha256(rp.as_bytes());
    let source = credential_id::open(a.store.wrapping_key(), &hash, id).unwrap();
    let cr = source.cred_random(uv).unwrap();
    salts.chunks(32).flat_map(|s| hmac(&*cr, s)).collect()
}

const SALT1: [u8; 32] = [0x11; 32];
const SALT2: [u8; 32] = [0x22; 32];

fn two_salts() -> Vec<u8> {
    [SALT1, SALT2].concat()
}

/// A getAssertion with UV through a pinUvAuthToken with the ga permission.
fn with_token(a: &mut Authenticator, req: Vec<u8>) -> Vec<u8> {
    let token = grant_token(a, 0x02);
    let param = Protocol::Two.authenticate(&token, &CDH);
    with_members(req, vec![(i(6), b(&param)), (i(7), i(2))])
}

#[test]
fn hmac_secret_gives_per_credential_outputs_under_the_uv_cred_random() {
    let mut a = auth();
    let make_hs = |a: &mut Authenticator, user: &[u8]| {
        let r = call(
            a,
            &mc_ext(
                "example.com",
                user,
                true,
                vec![("hmac-secret", Value::Bool(true))],
            ),
        )
        .unwrap();
        let ad = bytes(member(&r, 2));
        let e = auth_data_extensions(&ad);
        assert_eq!(
            e,
            Some(map(vec![(t("hmac-secret"), Value::Bool(true))])),
            "only the requested output"
        );
        parse_auth_data(&ad).3.unwrap().0
    };
    let id1 = make_hs(&mut a, b"u1");
    let id2 = make_hs(&mut a, b"u2");
    let mut seen = Vec::new();
    for protocol in [Protocol::One, Protocol::Two] {
        let p = Platform::new(&mut a, protocol);
        for (id, salts) in [
            (&id1, SALT1.to_vec()),
            (&id1, two_salts()),
            (&id2, two_salts()),
        ] {
            let req = ga_ext(
                "example.com",
                std::slice::from_ref(id),
                vec![("hmac-secret", p.input(&salts))],
            );
            for uv in [false, true] {
                let req = if uv {
                    with_token(&mut a, req.clone())
                } else {
                    req.clone()
                };
                let g = call(&mut a, &req).unwrap();
                let ad = bytes(member(&g, 2));
                assert_eq!(ad[32] & 0x04 != 0, uv);
                let e = auth_data_extensions(&ad);
                let out = p.decrypt(ext_output(&e, "hmac-secret").unwrap());
                assert_eq!(out.len(), salts.len());
                assert_eq!(out, expected_outputs(&a, "example.com", id, uv, &salts));
                assert_eq!(e.unwrap().as_map().unwrap().len(), 1);
                seen.push((protocol, id.clone(), uv, salts.len(), out));
            }
        }
    }
    // The protocol does not change the outputs; credential and UV do.
    for (p, id, uv, n, out) in &seen {
        for (p2, id2, uv2, n2, out2) in &seen {
            let same = id == id2 && uv == uv2 && n == n2;
            assert_eq!(out == out2, same, "{p:?}/{p2:?} uv {uv}/{uv2}");
        }
    }
}

#[test]
fn hmac_secret_for_several_credentials_follows_get_next_assertion() {
    let mut a = auth();
    let mut ids = Vec::new();
    for user in [b"u1", b"u2"] {
        let r = call(
            &mut a,
            &mc_ext(
                "example.com",
                user,
                true,
                vec![("hmac-secret", Value::Bool(true))],
            ),
        )
        .unwrap();
        ids.push(parse_auth_data(&bytes(member(&r, 2))).3.unwrap().0);
    }
    let p = Platform::new(&mut a, Protocol::Two);
    let g = call(
        &mut a,
        &ga_ext("example.com", &[], vec![("hmac-secret", p.input(&SALT1))]),
    )
    .unwrap();
    let next = call(&mut a, &[0x08]).unwrap();
    for (resp, id) in [(&g, &ids[1]), (&next, &ids[0])] {
        let e = auth_data_extensions(&bytes(member(resp, 2)));
        let out = p.decrypt(ext_output(&e, "hmac-secret").unwrap());
        assert_eq!(out, expected_outputs(&a, "example.com", id, false, &SALT1));
    }
}

#[test]
fn hmac_secret_error_branches() {
    let mut a = auth();
    let r = call(
        &mut a,
        &mc_ext(
            "example.com",
            b"u",
            false,
            vec![("hmac-secret", Value::Bool(true))],
        ),
    )
    .unwrap();
    let id = parse_auth_data(&bytes(member(&r, 2))).3.unwrap().0;
    let plain = make(&mut a, "example.com", b"p", -7, false).0;
    let allow = std::slice::from_ref(&id);
    for protocol in [Protocol::One, Protocol::Two] {
        let p = Platform::new(&mut a, protocol);
        let ga = |input: Value| ga_ext("example.com", allow, vec![("hmac-secret", input)]);
        let good = p.input(&SALT1);
        let edit = |key: i64, v: Option<Value>| {
            let mut m = good.clone().into_map().unwrap();
            m.retain(|(k, _)| k != &i(key));
            m.extend(v.map(|v| (i(key), v)));
            map(m)
        };
        // saltAuth that does not verify.
        let mut bad_auth = bytes(member(&good, 3));
        bad_auth[0] ^= 1;
        assert_eq!(call(&mut a, &ga(edit(3, Some(b(&bad_auth))))), Err(0x33));
        // Salts that decrypt to 16 bytes, and saltEnc lengths that are no whole block.
        let sixteen = p.protocol.encrypt(&p.shared, &[5u8; 16]);
        assert_eq!(call(&mut a, &ga(p.input_raw(sixteen))), Err(0x02));
        let iv = if protocol == Protocol::Two { 16 } else { 0 };
        for n in [0, 31, 33, 65] {
            let enc = vec![7u8; iv + n];
            assert_eq!(call(&mut a, &ga(p.input_raw(enc))), Err(0x02), "{n}");
        }
        // Unknown protocol, missing members, wrong types, a key not on the curve.
        assert_eq!(call(&mut a, &ga(edit(4, Some(i(3))))), Err(0x02));
        assert_eq!(call(&mut a, &ga(edit(1, None))), Err(0x14));
        assert_eq!(call(&mut a, &ga(edit(2, None))), Err(0x14));
        assert_eq!(call(&mut a, &ga(edit(3, None))), Err(0x14));
        assert_eq!(call(&mut a, &ga(edit(2, Some(t("x"))))), Err(0x11));
        assert_eq!(call(&mut a, &ga(t("x"))), Err(0x11));
        let off_curve = crate::crypto::cose::ec2_p256(-25, &[1; 32], &[2; 32]);
        assert_eq!(call(&mut a, &ga(edit(1, Some(off_curve)))), Err(0x02));
        // Absent protocol means protocol 1.
        let as_one = edit(4, None);
        let expected = if protocol == Protocol::One {
            Ok(())
        } else {
            Err(0x33)
        };
        assert_eq!(call(&mut a, &ga(as_one)).map(|_| ()), expected);
        // up=false: hmac-secret needs user presence.
        let silent = with_members(
            ga(good.clone()),
            vec![(i(5), map(vec![(t("up"), Value::Bool(false))]))],
        );
        assert_eq!(call(&mut a, &silent), Err(0x2b));
        // A credential made without hmac-secret: no output at all (no ED flag).
        let g = call(
            &mut a,
            &ga_ext(
                "example.com",
                std::slice::from_ref(&plain),
                vec![("hmac-secret", good.clone())],
            ),
        )
        .unwrap();
        assert_eq!(auth_data_extensions(&bytes(member(&g, 2))), None);
        assert_eq!(call(&mut a, &ga(good)).map(|_| ()), Ok(()));
    }
}

#[test]
fn hmac_secret_mc_outputs_equal_a_later_assertion() {
    for protocol in [Protocol::One, Protocol::Two] {
        let mut a = auth();
        let p = Platform::new(&mut a, protocol);
        let r = call(
            &mut a,
            &mc_ext(
                "example.com",
                b"u",
                true,
                vec![
                    ("hmac-secret", Value::Bool(true)),
                    ("hmac-secret-mc", p.input(&two_salts())),
                ],
            ),
        )
        .unwrap();
        let ad = bytes(member(&r, 2));
        let id = parse_auth_data(&ad).3.unwrap().0;
        let e = auth_data_extensions(&ad);
        assert_eq!(ext_output(&e, "hmac-secret"), Some(&Value::Bool(true)));
        let at_creation = p.decrypt(ext_output(&e, "hmac-secret-mc").unwrap());
        assert_eq!(
            at_creation,
            expected_outputs(&a, "example.com", &id, false, &two_salts())
        );
        let g = call(
            &mut a,
            &ga_ext(
                "example.com",
                std::slice::from_ref(&id),
                vec![("hmac-secret", p.input(&two_salts()))],
            ),
        )
        .unwrap();
        let e = auth_data_extensions(&bytes(member(&g, 2)));
        assert_eq!(
            p.decrypt(ext_output(&e, "hmac-secret").unwrap()),
            at_creation
        );
        // With a bad saltAuth the credential is not made.
        let mut input = p.input(&SALT1).into_map().unwrap();
        input.retain(|(k, _)| k != &i(3));
        input.push((i(3), b(&[0u8; 32])));
        let req = mc_ext(
            "example.com",
            b"u2",
            true,
            vec![
                ("hmac-secret", Value::Bool(true)),
                ("hmac-secret-mc", map(input)),
            ],
        );
        assert_eq!(call(&mut a, &req), Err(0x33));
        assert_eq!(a.store.discoverable_count(), 1);
    }
}

#[test]
fn cred_blob_is_stored_with_discoverable_and_non_discoverable_credentials() {
    let mut a = auth();
    for rk in [false, true] {
        let blob = vec![0x42u8; 32];
        let r = call(
            &mut a,
            &mc_ext("example.com", b"u", rk, vec![("credBlob", b(&blob))]),
        )
        .unwrap();
        let ad = bytes(member(&r, 2));
        let e = auth_data_extensions(&ad);
        assert_eq!(e, Some(map(vec![(t("credBlob"), Value::Bool(true))])));
        let id = parse_auth_data(&ad).3.unwrap().0;
        let allow = std::slice::from_ref(&id);
        let get = |a: &mut Authenticator, ask: bool| {
            let g = call(
                a,
                &ga_ext("example.com", allow, vec![("credBlob", Value::Bool(ask))]),
            )
            .unwrap();
            auth_data_extensions(&bytes(member(&g, 2)))
        };
        assert_eq!(
            get(&mut a, true),
            Some(map(vec![(t("credBlob"), b(&blob))]))
        );
        assert_eq!(get(&mut a, false), None, "not asked: no output");
        // Too long: not stored, no error.
        let r = call(
            &mut a,
            &mc_ext("example.com", b"v", rk, vec![("credBlob", b(&[1; 33]))]),
        )
        .unwrap();
        let ad = bytes(member(&r, 2));
        let e = auth_data_extensions(&ad);
        assert_eq!(ext_output(&e, "credBlob"), Some(&Value::Bool(false)));
        let id = parse_auth_data(&ad).3.unwrap().0;
        let g = call(
            &mut a,
            &ga_ext("example.com", &[id], vec![("credBlob", Value::Bool(true))]),
        )
        .unwrap();
        let e = auth_data_extensions(&bytes(member(&g, 2)));
        assert_eq!(
            ext_output(&e, "credBlob"),
            Some(&b(&[])),
            "none: empty bytes"
        );
    }
}

#[test]
fn large_blob_key_in_responses_only_when_asked_and_in_enumerations() {
    let mut a = auth();
    let r = call(
        &mut a,
        &mc_ext(
            "example.com",
            b"u",
            true,
            vec![("largeBlobKey", Value::Bool(true))],
        ),
    )
    .unwrap();
    let key = bytes(member(&r, 5));
    assert_eq!(key.len(), 32);
    let ad = bytes(member(&r, 2));
    assert_eq!(auth_data_extensions(&ad), None, "not an authData output");
    let id = parse_auth_data(&ad).3.unwrap().0;
    let plain = make(&mut a, "example.com", b"v", -7, true).0;
    let g = call(
        &mut a,
        &ga_ext(
            "example.com",
            std::slice::from_ref(&id),
            vec![("largeBlobKey", Value::Bool(true))],
        ),
    )
    .unwrap();
    assert_eq!(bytes(member(&g, 7)), key);
    let g = call(
        &mut a,
        &ga_request("example.com", std::slice::from_ref(&id), None),
    )
    .unwrap();
    assert!(member(&g, 7).is_none());
    let g = call(
        &mut a,
        &ga_ext(
            "example.com",
            &[plain],
            vec![("largeBlobKey", Value::Bool(true))],
        ),
    )
    .unwrap();
    assert!(
        member(&g, 7).is_none(),
        "a credential without a largeBlobKey"
    );
    assert_eq!(
        call(
            &mut a,
            &ga_ext(
                "example.com",
                std::slice::from_ref(&id),
                vec![("largeBlobKey", Value::Bool(false))]
            ),
        ),
        Err(0x2c)
    );
    // credentialManagement: the newest (without a key) first, then ours with it.
    let token = grant_token(&mut a, 0x04);
    let sp = map(vec![(i(1), b(&crate::crypto::sha256(b"example.com")))]);
    let first = call(&mut a, &cm_request(0x04, Some(sp), &token)).unwrap();
    assert!(member(&first, 0x0b).is_none());
    let second = call(&mut a, &[0x0a, 0xa1, 0x01, 0x05]).unwrap();
    assert_eq!(bytes(member(&second, 0x0b)), key);
    // Not for a non-discoverable credential.
    assert_eq!(
        call(
            &mut a,
            &mc_ext(
                "example.com",
                b"w",
                false,
                vec![("largeBlobKey", Value::Bool(true))]
            ),
        ),
        Err(0x2c)
    );
}

/// An authenticatorLargeBlobs request.
fn lb(members: Vec<(i64, Value)>) -> Vec<u8> {
    let m = members.into_iter().map(|(k, v)| (i(k), v)).collect();
    [&[0x0c][..], &cbor::encode(&map(m))].concat()
}

fn lb_get(a: &mut Authenticator, offset: usize, n: usize) -> Result<Vec<u8>, u8> {
    call(a, &lb(vec![(1, i(n as i64)), (3, i(offset as i64))])).map(|r| bytes(member(&r, 1)))
}

fn read_array(a: &mut Authenticator) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let f = lb_get(a, out.len(), MAX_FRAGMENT_LENGTH).unwrap();
        let n = f.len();
        out.extend(f);
        if n < MAX_FRAGMENT_LENGTH {
            return out;
        }
    }
}

/// A serialized array: `entries` as a CBOR array of byte strings, then its trailer.
fn array_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let data = cbor::encode(&Value::Array(entries.iter().map(|e| b(e)).collect()));
    let hash = crate::crypto::sha256(&data);
    [&data[..], &hash[..16]].concat()
}

/// One set fragment, authenticated with `token` (lbw) when given.
fn lb_set(
    offset: usize,
    fragment: &[u8],
    length: Option<usize>,
    token: Option<&[u8; 32]>,
) -> Vec<u8> {
    let mut m = vec![(2, b(fragment)), (3, i(offset as i64))];
    if let Some(n) = length {
        m.push((4, i(n as i64)));
    }
    if let Some(token) = token {
        let mut msg = vec![0xff; 32];
        msg.extend_from_slice(&[0x0c, 0x00]);
        msg.extend_from_slice(&(offset as u32).to_le_bytes());
        msg.extend_from_slice(&crate::crypto::sha256(fragment));
        m.push((5, b(&Protocol::Two.authenticate(token, &msg))));
        m.push((6, i(2)));
    }
    lb(m)
}

fn write_array(a: &mut Authenticator, array: &[u8], token: Option<&[u8; 32]>) -> Result<(), u8> {
    for (n, chunk) in array.chunks(MAX_FRAGMENT_LENGTH).enumerate() {
        let offset = n * MAX_FRAGMENT_LENGTH;
        let length = (offset == 0).then_some(array.len());
        call(a, &lb_set(offset, chunk, length, token))?;
    }
    Ok(())
}

#[test]
fn large_blob_array_is_written_in_fragments_and_read_back() {
    let (mut a, clock) = auth_with_clock(Config::default());
    assert_eq!(read_array(&mut a), INITIAL_ARRAY);
    // Two and three fragments, then the maximum size.
    for size in [9000, 16000] {
        let array = array_of(&[vec![0x5a; size - 30]]);
        assert!(array.len() > MAX_FRAGMENT_LENGTH);
        write_array(&mut a, &array, None).unwrap();
        assert_eq!(read_array(&mut a), array);
        assert_eq!(lb_get(&mut a, 100, 10).unwrap(), array[100..110]);
    }
    let stored = read_array(&mut a);
    // Another command between fragments ends the write; so do 30 s.
    let next = array_of(&[vec![1; 8000]]);
    let (head, tail) = next.split_at(MAX_FRAGMENT_LENGTH);
    call(&mut a, &lb_set(0, head, Some(next.len()), None)).unwrap();
    call(&mut a, &[0x04]).unwrap();
    assert_eq!(
        call(&mut a, &lb_set(head.len(), tail, None, None)),
        Err(0x04)
    );
    call(&mut a, &lb_set(0, head, Some(next.len()), None)).unwrap();
    clock.advance(Duration::from_secs(31));
    assert_eq!(
        call(&mut a, &lb_set(head.len(), tail, None, None)),
        Err(0x04)
    );
    // Wrong offset; past the announced length; a bad trailer keeps the old array.
    call(&mut a, &lb_set(0, head, Some(next.len()), None)).unwrap();
    assert_eq!(
        call(&mut a, &lb_set(head.len() + 1, tail, None, None)),
        Err(0x04)
    );
    call(&mut a, &lb_set(0, head, Some(next.len()), None)).unwrap();
    let longer = [tail, &[0]].concat();
    assert_eq!(
        call(&mut a, &lb_set(head.len(), &longer, None, None)),
        Err(0x02)
    );
    let mut corrupt = next.clone();
    corrupt[5] ^= 1;
    assert_eq!(write_array(&mut a, &corrupt, None), Err(0x3d));
    assert_eq!(read_array(&mut a), stored);
    // Reset brings the initial array back.
    a.power_up();
    call(&mut a, &[0x07]).unwrap();
    assert_eq!(read_array(&mut a), INITIAL_ARRAY);
}

#[test]
fn large_blob_writes_on_a_protected_key_need_a_token_with_lbw() {
    let mut a = auth();
    a.store.set_pin(&[1; 16], 4).unwrap();
    let array = array_of(&[vec![7; 9000]]);
    let first = &array[..MAX_FRAGMENT_LENGTH];
    assert_eq!(
        write_array(&mut a, &array, None),
        Err(0x36),
        "PUAT_REQUIRED"
    );
    // Without protocol; an unsupported one.
    let mut no_protocol = cbor::decode(&lb_set(0, first, Some(array.len()), None)[1..])
        .unwrap()
        .into_map()
        .unwrap();
    no_protocol.push((i(5), b(&[0; 32])));
    let req = [&[0x0c][..], &cbor::encode(&map(no_protocol.clone()))].concat();
    assert_eq!(call(&mut a, &req), Err(0x14));
    no_protocol.push((i(6), i(3)));
    let req = [&[0x0c][..], &cbor::encode(&map(no_protocol))].concat();
    assert_eq!(call(&mut a, &req), Err(0x02));
    // A token without lbw, a wrong MAC, then the right token.
    let ga_only = grant_token(&mut a, 0x02);
    assert_eq!(write_array(&mut a, &array, Some(&ga_only)), Err(0x33));
    let lbw = grant_token(&mut a, 0x10);
    assert_eq!(write_array(&mut a, &array, Some(&[0; 32])), Err(0x33));
    write_array(&mut a, &array, Some(&lbw)).unwrap();
    assert_eq!(read_array(&mut a), array);
    // A token used for getAssertion keeps lbw (§6.2.2 step 9): Chrome's largeBlob write.
    make(&mut a, "example.com", b"u", -7, false);
    let both = grant_token(&mut a, 0x12);
    a.state.token.consume();
    write_array(&mut a, &array_of(&[]), Some(&both)).unwrap();
    assert_eq!(read_array(&mut a), array_of(&[]));
    // Reads need nothing.
    assert_eq!(lb_get(&mut a, 0, 1).unwrap(), vec![0x80]);
}

#[test]
fn get_info_lists_the_extensions_and_large_blob_limits() {
    let r = call(&mut auth(), &[0x04]).unwrap();
    let names: Vec<&str> = member(&r, 2)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_text().unwrap())
        .collect();
    assert_eq!(names, crate::ctap::extensions::SUPPORTED);
    assert_eq!(
        text_member(member(&r, 4).unwrap(), "largeBlobs"),
        Some(&Value::Bool(true))
    );
    assert_eq!(member(&r, 0x0b), Some(&i(16384)));
    assert_eq!(member(&r, 0x0f), Some(&i(32)));
    assert_eq!(member(&r, 5), Some(&i(MAX_FRAGMENT_LENGTH as i64 + 64)));
}
