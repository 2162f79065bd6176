//! The USB/IP server over real TCP: enumeration as Linux does it, held interrupt-IN
//! URBs, unlink, import rules and hostile peers.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::ctaphid::{cbor, ctaphid_init, init_with, report};
use support::usbip::{closed_by_server, import, start, start_with};
use vkey::ctap::{Config, Presence, PresenceMode};
use vkey::usbip::client::{Client, Reply, list_devices};
use vkey::usbip::protocol::{DIR_IN, DIR_OUT};

/// Asserts that nothing arrives on the connection for a while (a held URB stays held).
/// This is a negative check: a slow machine cannot make it fail.
fn assert_silent(c: &mut Client) {
    c.stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.stream().read(&mut b) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    c.stream().set_read_timeout(None).unwrap();
}

fn assert_closed_by_server(s: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(20);
    assert!(closed_by_server(s, deadline), "connection not closed");
}

#[test]
fn devlist_describes_one_hid_device() {
    let (addr, _key) = start();
    let devs = list_devices(addr).unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].busid, "1-1");
    assert_eq!((devs[0].vendor_id, devs[0].product_id), (0x1209, 0x0001));
    assert_eq!(devs[0].speed, 2);
    assert_eq!(devs[0].interface_classes, vec![3]);
}

#[test]
fn linux_enumeration_and_stalls() {
    let (addr, _key) = start();
    let mut c = Client::import(addr, "1-1").unwrap();
    let report_desc = c.enumerate().unwrap();
    assert_eq!(report_desc.len(), 34);
    assert_eq!(&report_desc[..3], &[0x06, 0xd0, 0xf1]);
    // The first GET_DESCRIPTOR(device) asks for 8 bytes: never more than wLength.
    let (st, d) = c.control_in(0x80, 6, 0x0100, 0, 8).unwrap();
    assert_eq!((st, d.len()), (0, 8));
    // Unsupported requests stall with -EPIPE at once.
    assert_eq!(c.control_in(0x80, 6, 0x0600, 0, 10).unwrap().0, -32); // device qualifier
    assert_eq!(c.control_in(0x81, 6, 0x2200, 7, 34).unwrap().0, -32); // interface 7
    assert_eq!(c.control_in(0xc0, 0x42, 0, 0, 4).unwrap().0, -32); // vendor request
    // GET_STATUS is answered.
    assert_eq!(c.control_in(0x80, 0, 0, 0, 2).unwrap(), (0, vec![0, 0]));
    // An endpoint that does not exist stalls too.
    let seq = c.submit(5, DIR_IN, [0; 8], 64, &[]).unwrap();
    assert!(
        matches!(c.recv_with_data(|_| true).unwrap(), Reply::Submit { seqnum, status: -32, .. } if seqnum == seq)
    );
}

#[test]
fn in_urb_is_held_until_a_report_exists() {
    let (addr, _key) = start();
    let mut c = Client::import(addr, "1-1").unwrap();
    c.enumerate().unwrap();
    let held = c.submit(1, DIR_IN, [0; 8], 64, &[]).unwrap();
    assert_silent(&mut c);
    // An OUT report: its RET_SUBMIT (no data, actual_length 64), then the held IN URB
    // completes with the INIT response.
    let out = c
        .submit(
            1,
            DIR_OUT,
            [0; 8],
            64,
            &report(0xffff_ffff, 0x06, b"12345678"),
        )
        .unwrap();
    let mut got_out = false;
    let mut got_in = None;
    while !(got_out && got_in.is_some()) {
        match c.recv_with_data(|s| s == held).unwrap() {
            Reply::Submit {
                seqnum,
                status: 0,
                actual_length: 64,
                data,
            } if seqnum == out => {
                assert!(data.is_empty());
                got_out = true;
            }
            Reply::Submit {
                seqnum,
                status: 0,
                data,
                ..
            } if seqnum == held => got_in = Some(data),
            r => panic!("unexpected {r:?}"),
        }
    }
    let r = got_in.unwrap();
    assert_eq!(r.len(), 64);
    assert_eq!(&r[7..15], b"12345678");
}

#[test]
fn unlink_of_held_urb_and_of_completed_urb() {
    let (addr, _key) = start();
    let mut c = Client::import(addr, "1-1").unwrap();
    c.enumerate().unwrap();
    let held = c.submit(1, DIR_IN, [0; 8], 64, &[]).unwrap();
    let u = c.unlink(held).unwrap();
    assert_eq!(
        c.recv().unwrap(),
        Reply::Unlink {
            seqnum: u,
            status: -104
        }
    );
    // The unlinked URB never completes: the next report goes to the next URB.
    let cid = init_with(&mut c, b"abcdefgh");
    // Unlink of a URB that already completed: status 0.
    let u = c.unlink(held).unwrap();
    assert_eq!(
        c.recv().unwrap(),
        Reply::Unlink {
            seqnum: u,
            status: 0
        }
    );
    // The device still works.
    c.write_report(&report(cid, 0x01, b"ping")).unwrap();
    let r = c.read_report().unwrap();
    assert_eq!(
        &r[..7],
        &[
            (cid >> 24) as u8,
            (cid >> 16) as u8,
            (cid >> 8) as u8,
            cid as u8,
            0x81,
            0,
            4
        ]
    );
    assert_eq!(&r[7..11], b"ping");
}

#[test]
fn ctap_get_info_over_usbip() {
    let (addr, _key) = start();
    let mut c = Client::import(addr, "1-1").unwrap();
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    let msg = cbor(&mut c, cid, &[0x04]);
    let expected = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ctap/get_info.response.bin"
    ))
    .unwrap();
    assert_eq!(msg, expected);
}

#[test]
fn second_import_refused_then_allowed_after_close() {
    let (addr, _key) = start();
    let first = Client::import(addr, "1-1").unwrap();
    let err = Client::import(addr, "1-1").err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(Client::import(addr, "9-9").is_err(), "unknown bus id");
    drop(first);
    let mut again = Client::import(addr, "1-1").unwrap();
    again.enumerate().unwrap();
}

#[test]
fn hostile_peers_are_closed_and_others_keep_working() {
    let (addr, _key) = start();
    let mut good = Client::import(addr, "1-1").unwrap();
    good.enumerate().unwrap();
    let cid = ctaphid_init(&mut good);

    // Garbage instead of an OP header.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0xde; 64]).unwrap();
    assert_closed_by_server(&mut s);

    // Early close in the middle of a header.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0x01, 0x11, 0x80]).unwrap();
    drop(s);

    // CMD_SUBMIT before any import.
    let mut s = TcpStream::connect(addr).unwrap();
    let mut submit = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0];
    submit.resize(48, 0);
    s.write_all(&submit).unwrap();
    assert_closed_by_server(&mut s);

    // A huge OUT length after a valid import of another bus id is impossible (one
    // device), so check it on a fresh import once `good` is gone below. First: the
    // good connection is unaffected.
    good.write_report(&report(cid, 0x01, b"ok")).unwrap();
    assert_eq!(&good.read_report().unwrap()[7..9], b"ok");
    drop(good);

    for bad in [
        // CMD_SUBMIT OUT with a 1 GiB transfer length.
        submit_header(1, 0, 1, 0x4000_0000, 0),
        // Interrupt OUT longer than a report.
        submit_header(2, 0, 1, 65, 0),
        // Isochronous packets on a device without isochronous endpoints.
        submit_header(3, 1, 1, 64, 1000),
        // An unknown command code.
        {
            let mut h = vec![0, 0, 0, 9];
            h.resize(48, 0);
            h
        },
    ] {
        // The previous hostile session may still be closing (grace period).
        let mut c = import(addr);
        let mut bad = bad;
        if bad[3] == 1 && bad[15] == 0 && bad[27] == 65 {
            bad.extend_from_slice(&[0u8; 65]);
        }
        c.stream().write_all(&bad).unwrap();
        assert_closed_by_server(c.stream());
    }

    // After all that, the key imports and answers normally.
    let mut c = import(addr);
    c.enumerate().unwrap();
    ctaphid_init(&mut c);
}

fn submit_header(seq: u32, direction: u32, ep: u32, len: u32, packets: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [1u32, seq, 0x0001_0002, direction, ep, 0, len, 0, packets, 0] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[0; 8]);
    v
}

#[test]
fn while_a_request_waits_for_presence_the_connection_keeps_serving() {
    let (addr, _key) = start_with(Config {
        presence: Presence::new(PresenceMode::Delay(Duration::from_secs(25))),
        ..Config::default()
    });
    let mut c = Client::import(addr, "1-1").unwrap();
    c.enumerate().unwrap();
    let a = ctaphid_init(&mut c);
    let b = ctaphid_init(&mut c);
    // authenticatorSelection on channel A waits for the user.
    c.write_report(&report(a, 0x10, &[0x0b])).unwrap();
    // KEEPALIVE with status UPNEEDED (2) on channel A.
    let r = c.read_report().unwrap();
    assert_eq!(&r[4..8], &[0xbb, 0, 1, 2]);
    // Channel B is answered at once: CHANNEL_BUSY.
    c.write_report(&report(b, 0x01, b"hi")).unwrap();
    loop {
        let r = c.read_report().unwrap();
        if r[..4] == b.to_be_bytes() {
            assert_eq!(&r[4..8], &[0xbf, 0, 1, 0x06]);
            break;
        }
        assert_eq!(r[4], 0xbb, "only keepalives on A meanwhile");
    }
    // A held IN URB can be unlinked meanwhile.
    let held = c.submit(1, DIR_IN, [0; 8], 64, &[]).unwrap();
    let u = c.unlink(held).unwrap();
    loop {
        match c.recv_with_data(|s| s == held).unwrap() {
            Reply::Unlink { seqnum, status } if seqnum == u => {
                // -ECONNRESET if still held, 0 if a keepalive completed it first.
                assert!(status == -104 || status == 0);
                break;
            }
            Reply::Submit { seqnum, .. } if seqnum == held => continue,
            r => panic!("unexpected {r:?}"),
        }
    }
    // CANCEL on A: the request answers CTAP2_ERR_KEEPALIVE_CANCEL.
    c.write_report(&report(a, 0x11, &[])).unwrap();
    loop {
        let r = c.read_report().unwrap();
        if r[4] == 0x90 {
            assert_eq!(&r[..4], &a.to_be_bytes());
            assert_eq!(&r[5..8], &[0, 1, 0x2d]);
            break;
        }
        assert_eq!(r[4], 0xbb);
    }
}
