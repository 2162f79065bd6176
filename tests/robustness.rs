//! Input from the wire never panics: tens of thousands of random and mutated CTAPHID
//! reports and CTAP messages (seeded, so a failure reproduces), fed to the real layers.

use std::time::{Duration, Instant};

use ciborium::Value;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use vkey::ctap::{Authenticator, Config, RequestContext};
use vkey::ctaphid::{self, CtapHid, Event};
use vkey::store::Store;

fn seeds() -> Vec<Vec<u8>> {
    let table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ctap/errors.tsv"
    ))
    .unwrap();
    table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| hex::decode(l.split('\t').nth(1).unwrap()).unwrap())
        .filter(|r| !r.is_empty())
        .collect()
}

fn mutate(rng: &mut StdRng, mut m: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..4) {
            0 if !m.is_empty() => {
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            1 if !m.is_empty() => {
                let i = rng.random_range(0..m.len());
                m.truncate(i.max(1));
            }
            2 => {
                let i = rng.random_range(0..=m.len());
                m.insert(i, rng.random());
            }
            _ => {
                let mut tail = vec![0u8; rng.random_range(0..16)];
                rng.fill_bytes(&mut tail);
                m.extend_from_slice(&tail);
            }
        }
    }
    m
}

/// Mutates a CBOR tree: replaces nodes by values of other types, drops map members.
fn mutate_value(rng: &mut StdRng, v: &mut Value, depth: usize) {
    let replace = |rng: &mut StdRng| -> Value {
        match rng.random_range(0..7) {
            0 => Value::Integer(rng.random_range(-300i64..300).into()),
            1 => Value::Bytes((0..rng.random_range(0..70)).map(|_| rng.random()).collect()),
            2 => Value::Text(
                ["", "public-key", "x", "example.com", "rk", "up", "uv"][rng.random_range(0..7)]
                    .into(),
            ),
            3 => Value::Bool(rng.random()),
            4 => Value::Array(vec![]),
            5 => Value::Map(vec![]),
            _ => Value::Null,
        }
    };
    match v {
        Value::Map(m) if !m.is_empty() && depth < 4 => {
            let i = rng.random_range(0..m.len());
            match rng.random_range(0..4) {
                0 => {
                    m.remove(i);
                }
                1 => m[i].1 = replace(rng),
                _ => mutate_value(rng, &mut m[i].1, depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 4 => {
            let i = rng.random_range(0..a.len());
            if rng.random_bool(0.3) {
                a[i] = replace(rng)
            } else {
                mutate_value(rng, &mut a[i], depth + 1)
            }
        }
        _ => *v = replace(rng),
    }
}

#[test]
fn ctap_core_survives_mutated_and_random_messages() {
    let mut rng = StdRng::seed_from_u64(0x5eed_f1d0);
    let seeds = seeds();
    let mut auth = Authenticator::new(Store::ephemeral(), Config::default()).unwrap();
    let mut statuses = std::collections::BTreeMap::<u8, usize>::new();
    for i in 0..20_000 {
        let msg = if i % 4 == 1 {
            // Value-level mutation of a well-formed request: reaches the parameter checks.
            let s = seeds[rng.random_range(0..seeds.len())].clone();
            match vkey::ctap::cbor::decode(&s[1..]) {
                Ok(mut v) => {
                    mutate_value(&mut rng, &mut v, 0);
                    let mut m = vec![s[0]];
                    m.extend_from_slice(&vkey::ctap::cbor::encode(&v));
                    m
                }
                Err(_) => s,
            }
        } else if i % 4 == 0 {
            let mut m = vec![
                *[0x01u8, 0x02, 0x04, 0x06, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x41]
                    .get(i % 10)
                    .unwrap(),
            ];
            let mut body = vec![0u8; rng.random_range(0..200)];
            rng.fill_bytes(&mut body);
            m.extend_from_slice(&body);
            m
        } else {
            let s = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, s)
        };
        let (ctx, _h) = RequestContext::new();
        let resp = auth.process(&msg, &ctx);
        assert!(!resp.is_empty(), "message {i}: {}", hex::encode(&msg));
        *statuses.entry(resp[0]).or_default() += 1;
        if resp[0] == 0x00 && resp.len() > 1 {
            assert!(
                vkey::ctap::cbor::decode(&resp[1..]).is_ok(),
                "message {i}: response is not CBOR"
            );
        }
    }
    eprintln!("statuses: {statuses:?}");
    // The inputs reach past the CBOR parser: successes (at least 1 %: how many depends on
    // the mix of seeds in errors.tsv, most of which are errors) and many distinct errors.
    assert!(
        statuses.get(&0x00).copied().unwrap_or(0) > 200,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&0x12).copied().unwrap_or(0) < 16_000,
        "{statuses:?}"
    );
    assert!(statuses.len() >= 15, "{statuses:?}");
    // Still a working key afterwards.
    let (ctx, _h) = RequestContext::new();
    assert_eq!(auth.process(&[0x04], &ctx)[0], 0x00);
}

#[test]
fn ctaphid_survives_random_reports() {
    let mut rng = StdRng::seed_from_u64(0xc1d_c1d);
    let mut hid = CtapHid::new(ctaphid::Config {
        cbor: true,
        msg: false,
        wink: true,
        version: (0, 1, 0),
    });
    let mut now = Instant::now();
    let mut cids: Vec<u32> = vec![0xffff_ffff];
    for i in 0..50_000 {
        let mut r = [0u8; 64];
        rng.fill_bytes(&mut r);
        // Often use a real channel and a plausible command so deep paths are reached.
        if i % 2 == 0 {
            let cid = cids[rng.random_range(0..cids.len())];
            r[..4].copy_from_slice(&cid.to_be_bytes());
            if i % 4 == 0 {
                r[4] = 0x80
                    | [0x01u8, 0x03, 0x04, 0x06, 0x08, 0x10, 0x11, 0x3b, 0x3f]
                        [rng.random_range(0..9)];
                r[5] = rng.random_range(0..0x20);
            } else {
                r[4] &= 0x7f;
            }
        }
        let len = if i % 10 == 0 {
            rng.random_range(0..64)
        } else {
            64
        };
        hid.handle_report(&r[..len], now);
        now += Duration::from_millis(rng.random_range(0..300));
        hid.handle_timeout(now);
        while let Some(out) = hid.poll_report() {
            // INIT responses on broadcast hand out channels; remember them.
            if out[..4] == [0xff; 4] && out[4] == 0x86 {
                cids.push(u32::from_be_bytes(out[15..19].try_into().unwrap()));
            }
        }
        while let Some(ev) = hid.poll_event() {
            if let Event::Request { txn, .. } = ev {
                hid.respond(txn, &[0x00]);
            }
        }
    }
}

#[test]
fn usbip_parsers_and_ep0_survive_random_input() {
    use vkey::usbip::descriptors::DeviceIdentity;
    use vkey::usbip::device::Control;
    use vkey::usbip::protocol::{Setup, read_op_header, read_urb_command};
    let mut rng = StdRng::seed_from_u64(0x0005_1b1b);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut control = Control::new(DeviceIdentity {
        vendor_id: 0x1209,
        product_id: 1,
        device_release: 0x10,
        manufacturer: "m".into(),
        product: "p".into(),
        serial: "s".into(),
    });
    for i in 0..30_000 {
        let mut buf = vec![0u8; rng.random_range(0..200)];
        rng.fill_bytes(&mut buf);
        if i % 2 == 0 && buf.len() >= 4 {
            // A plausible command code, so the length and field checks are reached.
            buf[..4].copy_from_slice(&[0, 0, 0, rng.random_range(0..5)]);
        }
        rt.block_on(async {
            let _ = read_urb_command(&mut &buf[..]).await;
            let _ = read_op_header(&mut &buf[..]).await;
        });
        let mut setup = [0u8; 8];
        rng.fill_bytes(&mut setup);
        let _ = control.handle(&Setup::parse(setup), &buf);
    }
}
