//! CTAPHID rules, checked with plain 64-byte reports and a fake clock.

use std::time::{Duration, Instant};

use super::packet::{BROADCAST_CID, Packet, fragment};
use super::transport::{CAPABILITY_CBOR, CAPABILITY_LOCK, CAPABILITY_NMSG, CAPABILITY_WINK};
use super::*;

const ERROR: u8 = 0x3f;

fn hid() -> CtapHid {
    CtapHid::new(Config {
        cbor: true,
        msg: false,
        wink: true,
        version: (1, 2, 3),
    })
}

fn report(bytes: &[u8]) -> Vec<u8> {
    let mut r = bytes.to_vec();
    r.resize(64, 0);
    r
}

fn init_packet(cid: u32, cmd: u8, bcnt: u16, data: &[u8]) -> Vec<u8> {
    let mut r = cid.to_be_bytes().to_vec();
    r.push(cmd | 0x80);
    r.extend_from_slice(&bcnt.to_be_bytes());
    r.extend_from_slice(data);
    report(&r)
}

fn cont_packet(cid: u32, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut r = cid.to_be_bytes().to_vec();
    r.push(seq);
    r.extend_from_slice(data);
    report(&r)
}

/// Reassembles every queued report into (cid, cmd, payload) messages.
fn drain(h: &mut CtapHid) -> Vec<(u32, u8, Vec<u8>)> {
    let mut msgs: Vec<(u32, u8, Vec<u8>, usize)> = Vec::new();
    while let Some(r) = h.poll_report() {
        match Packet::parse(&r) {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => {
                let n = (bcnt as usize).min(data.len());
                msgs.push((cid, cmd, data[..n].to_vec(), bcnt as usize));
            }
            Packet::Cont { cid, data, .. } => {
                let m = msgs
                    .iter_mut()
                    .rev()
                    .find(|m| m.0 == cid)
                    .expect("continuation without init");
                let n = (m.3 - m.2.len()).min(data.len());
                m.2.extend_from_slice(&data[..n]);
            }
        }
    }
    msgs.into_iter().map(|(c, m, d, _)| (c, m, d)).collect()
}

fn allocate(h: &mut CtapHid, now: Instant) -> u32 {
    h.handle_report(&init_packet(BROADCAST_CID, 0x06, 8, b"12345678"), now);
    let msgs = drain(h);
    assert_eq!(msgs.len(), 1);
    u32::from_be_bytes(msgs[0].2[8..12].try_into().unwrap())
}

fn expect_error(h: &mut CtapHid, cid: u32, err: HidError) {
    assert_eq!(drain(h), vec![(cid, ERROR, vec![err as u8])]);
}

#[test]
fn init_allocates_channel_echoes_nonce_and_tells_capabilities() {
    let mut h = hid();
    let now = Instant::now();
    h.handle_report(
        &init_packet(BROADCAST_CID, 0x06, 8, &[9, 8, 7, 6, 5, 4, 3, 2]),
        now,
    );
    let msgs = drain(&mut h);
    assert_eq!(msgs.len(), 1);
    let (cid, cmd, data) = &msgs[0];
    assert_eq!((*cid, *cmd), (BROADCAST_CID, 0x06));
    assert_eq!(data.len(), 17);
    assert_eq!(&data[..8], &[9, 8, 7, 6, 5, 4, 3, 2]);
    let new_cid = u32::from_be_bytes(data[8..12].try_into().unwrap());
    assert!(new_cid != 0 && new_cid != BROADCAST_CID);
    assert_eq!(&data[12..16], &[2, 1, 2, 3]);
    assert_eq!(
        data[16],
        CAPABILITY_WINK | CAPABILITY_LOCK | CAPABILITY_CBOR | CAPABILITY_NMSG
    );
    // Each INIT on broadcast gets a different channel.
    assert_ne!(allocate(&mut h, now), new_cid);
}

#[test]
fn init_on_allocated_channel_resyncs_and_aborts_its_request() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    h.handle_report(&init_packet(cid, 0x10, 1, &[0x04]), now);
    let Some(Event::Request { txn, .. }) = h.poll_event() else {
        panic!("no request")
    };
    h.handle_report(&init_packet(cid, 0x06, 8, b"abcdefgh"), now);
    assert_eq!(h.poll_event(), Some(Event::Abort { txn }));
    let msgs = drain(&mut h);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0, cid);
    assert_eq!(&msgs[0].2[8..12], &cid.to_be_bytes());
    // The late response of the aborted request goes nowhere.
    h.respond(txn, &[0x00]);
    assert!(drain(&mut h).is_empty());
    assert!(!h.is_busy());
}

#[test]
fn channel_rules() {
    let mut h = hid();
    let now = Instant::now();
    h.handle_report(&init_packet(0, 0x06, 8, b"12345678"), now);
    expect_error(&mut h, 0, HidError::InvalidChannel);
    h.handle_report(&init_packet(BROADCAST_CID, 0x01, 1, b"x"), now);
    expect_error(&mut h, BROADCAST_CID, HidError::InvalidChannel);
    h.handle_report(&init_packet(0x1234_5678, 0x01, 1, b"x"), now);
    expect_error(&mut h, 0x1234_5678, HidError::InvalidChannel);
    // INIT on a channel never allocated is refused too.
    h.handle_report(&init_packet(0x1234_5678, 0x06, 8, b"12345678"), now);
    expect_error(&mut h, 0x1234_5678, HidError::InvalidChannel);
}

#[test]
fn command_and_length_rules() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    h.handle_report(&init_packet(cid, 0x55, 0, &[]), now);
    expect_error(&mut h, cid, HidError::InvalidCmd);
    // KEEPALIVE and ERROR only go device → host.
    h.handle_report(&init_packet(cid, 0x3b, 1, &[1]), now);
    expect_error(&mut h, cid, HidError::InvalidCmd);
    h.handle_report(&init_packet(cid, 0x3f, 1, &[1]), now);
    expect_error(&mut h, cid, HidError::InvalidCmd);
    // MSG is refused while the application has no CTAP1 (NMSG capability set).
    h.handle_report(&init_packet(cid, 0x03, 1, &[1]), now);
    expect_error(&mut h, cid, HidError::InvalidCmd);
    h.handle_report(&init_packet(cid, 0x01, 7610, &[]), now);
    expect_error(&mut h, cid, HidError::InvalidLen);
    h.handle_report(&init_packet(BROADCAST_CID, 0x06, 7, b"1234567"), now);
    expect_error(&mut h, BROADCAST_CID, HidError::InvalidLen);
    assert!(h.poll_event().is_none());
}

#[test]
fn ping_of_maximum_size_roundtrips() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    let payload: Vec<u8> = (0..7609u32).map(|i| (i * 7) as u8).collect();
    for r in fragment(cid, 0x01, &payload).unwrap() {
        h.handle_report(&r, now);
    }
    assert_eq!(drain(&mut h), vec![(cid, 0x01, payload)]);
}

#[test]
fn out_of_order_sequence_is_invalid_seq() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    let reports = fragment(cid, 0x01, &[7u8; 200]).unwrap();
    h.handle_report(&reports[0], now);
    h.handle_report(&reports[2], now); // seq 1 before seq 0
    expect_error(&mut h, cid, HidError::InvalidSeq);
    // The channel works again afterwards.
    for r in fragment(cid, 0x01, &[1, 2, 3]).unwrap() {
        h.handle_report(&r, now);
    }
    assert_eq!(drain(&mut h), vec![(cid, 0x01, vec![1, 2, 3])]);
}

#[test]
fn new_message_on_same_channel_mid_assembly_is_invalid_seq() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    h.handle_report(&fragment(cid, 0x01, &[7u8; 100]).unwrap()[0], now);
    h.handle_report(&init_packet(cid, 0x01, 1, &[1]), now);
    expect_error(&mut h, cid, HidError::InvalidSeq);
}

#[test]
fn other_channel_gets_channel_busy_at_once() {
    let mut h = hid();
    let now = Instant::now();
    let a = allocate(&mut h, now);
    let b = allocate(&mut h, now);
    // While A is mid-message.
    let reports = fragment(a, 0x01, &[7u8; 100]).unwrap();
    h.handle_report(&reports[0], now);
    h.handle_report(&init_packet(b, 0x01, 1, &[1]), now);
    expect_error(&mut h, b, HidError::ChannelBusy);
    h.handle_report(&reports[1], now);
    assert_eq!(drain(&mut h), vec![(a, 0x01, vec![7u8; 100])]);
    // While A's CBOR request is being processed.
    h.handle_report(&init_packet(a, 0x10, 1, &[0x04]), now);
    let Some(Event::Request {
        txn,
        cid,
        kind,
        data,
    }) = h.poll_event()
    else {
        panic!()
    };
    assert_eq!((cid, kind, data), (a, RequestKind::Cbor, vec![0x04]));
    h.handle_report(&init_packet(b, 0x01, 1, &[1]), now);
    expect_error(&mut h, b, HidError::ChannelBusy);
    // INIT is always answered, even while busy.
    h.handle_report(&init_packet(BROADCAST_CID, 0x06, 8, b"12345678"), now);
    assert_eq!(drain(&mut h).len(), 1);
    h.respond(txn, &[0x00, 0xa0]);
    assert_eq!(drain(&mut h), vec![(a, 0x10, vec![0x00, 0xa0])]);
}

#[test]
fn incomplete_message_times_out_after_one_second() {
    let mut h = hid();
    let t0 = Instant::now();
    let cid = allocate(&mut h, t0);
    h.handle_report(&fragment(cid, 0x01, &[7u8; 100]).unwrap()[0], t0);
    assert_eq!(h.poll_timeout(), Some(t0 + Duration::from_millis(1000)));
    h.handle_timeout(t0 + Duration::from_millis(999));
    assert!(drain(&mut h).is_empty());
    h.handle_timeout(t0 + Duration::from_millis(1000));
    expect_error(&mut h, cid, HidError::MsgTimeout);
    assert_eq!(h.poll_timeout(), None);
    // A late continuation is now spurious and ignored.
    h.handle_report(&cont_packet(cid, 0, &[1]), t0 + Duration::from_millis(1100));
    assert!(drain(&mut h).is_empty());
}

#[test]
fn a_continuation_read_late_still_counts_until_the_timer_fires() {
    // The packet came in time but was read 1.5 s after the last one (a loaded host):
    // no timer fired in between, so it completes the message.
    let mut h = hid();
    let t0 = Instant::now();
    let cid = allocate(&mut h, t0);
    let packets = fragment(cid, 0x10, &[7u8; 100]).unwrap();
    h.handle_report(&packets[0], t0);
    h.handle_report(&packets[1], t0 + Duration::from_millis(1500));
    assert!(matches!(h.poll_event(), Some(Event::Request { .. })));
    assert!(drain(&mut h).is_empty(), "no MSG_TIMEOUT");
}

#[test]
fn each_packet_restarts_the_message_timer() {
    // A slow host that keeps sending: 800 ms between packets, 2.4 s for the message.
    let mut h = hid();
    let t0 = Instant::now();
    let cid = allocate(&mut h, t0);
    let packets = fragment(cid, 0x10, &[7u8; 150]).unwrap();
    assert_eq!(packets.len(), 3);
    let mut now = t0;
    for (i, p) in packets.iter().enumerate() {
        h.handle_timeout(now);
        assert!(
            drain(&mut h).is_empty(),
            "no timeout while packets keep coming"
        );
        h.handle_report(p, now);
        if i + 1 < packets.len() {
            assert_eq!(h.poll_timeout(), Some(now + Duration::from_millis(1000)));
        }
        now += Duration::from_millis(800);
    }
    assert!(matches!(h.poll_event(), Some(Event::Request { .. })));
}

#[test]
fn timed_out_message_does_not_block_the_next_one() {
    let mut h = hid();
    let t0 = Instant::now();
    let a = allocate(&mut h, t0);
    let b = allocate(&mut h, t0);
    h.handle_report(&fragment(a, 0x01, &[7u8; 100]).unwrap()[0], t0);
    // No timer fired, but the next packet arrives after the deadline.
    h.handle_report(&init_packet(b, 0x01, 1, &[5]), t0 + Duration::from_secs(2));
    assert_eq!(
        drain(&mut h),
        vec![
            (a, ERROR, vec![HidError::MsgTimeout as u8]),
            (b, 0x01, vec![5])
        ]
    );
}

#[test]
fn keepalive_every_100ms_while_processing_and_cancel() {
    let mut h = hid();
    let t0 = Instant::now();
    let cid = allocate(&mut h, t0);
    h.handle_report(&init_packet(cid, 0x10, 1, &[0x0b]), t0);
    let Some(Event::Request { txn, .. }) = h.poll_event() else {
        panic!()
    };
    assert_eq!(h.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    h.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(drain(&mut h), vec![(cid, 0x3b, vec![1])]);
    h.set_keepalive_status(KeepaliveStatus::UpNeeded);
    h.handle_timeout(t0 + Duration::from_millis(150));
    assert!(drain(&mut h).is_empty());
    h.handle_timeout(t0 + Duration::from_millis(200));
    assert_eq!(drain(&mut h), vec![(cid, 0x3b, vec![2])]);
    // CANCEL from another channel is ignored; from the request's channel it is an event.
    let other = allocate(&mut h, t0);
    h.handle_report(&init_packet(other, 0x11, 0, &[]), t0);
    assert!(h.poll_event().is_none());
    h.handle_report(&init_packet(cid, 0x11, 0, &[]), t0);
    assert_eq!(h.poll_event(), Some(Event::Cancel { txn }));
    assert!(drain(&mut h).is_empty(), "CANCEL gets no reply of its own");
    h.respond(txn, &[0x2d]);
    assert_eq!(drain(&mut h), vec![(cid, 0x10, vec![0x2d])]);
    assert_eq!(h.poll_timeout(), None, "idle: no timer");
}

#[test]
fn lock_excludes_other_channels_until_released() {
    let mut h = hid();
    let t0 = Instant::now();
    let a = allocate(&mut h, t0);
    let b = allocate(&mut h, t0);
    h.handle_report(&init_packet(a, 0x04, 1, &[11]), t0);
    expect_error(&mut h, a, HidError::InvalidPar);
    h.handle_report(&init_packet(a, 0x04, 1, &[2]), t0);
    assert_eq!(drain(&mut h), vec![(a, 0x04, vec![])]);
    h.handle_report(&init_packet(b, 0x01, 1, &[1]), t0 + Duration::from_secs(1));
    expect_error(&mut h, b, HidError::ChannelBusy);
    h.handle_report(&init_packet(a, 0x01, 1, &[1]), t0 + Duration::from_secs(1));
    assert_eq!(drain(&mut h), vec![(a, 0x01, vec![1])]);
    // The lock expires by itself.
    h.handle_report(&init_packet(b, 0x01, 1, &[1]), t0 + Duration::from_secs(3));
    assert_eq!(drain(&mut h), vec![(b, 0x01, vec![1])]);
    // LOCK 0 releases at once.
    h.handle_report(&init_packet(a, 0x04, 1, &[5]), t0);
    h.handle_report(&init_packet(a, 0x04, 1, &[0]), t0);
    drain(&mut h);
    h.handle_report(&init_packet(b, 0x01, 1, &[1]), t0);
    assert_eq!(drain(&mut h), vec![(b, 0x01, vec![1])]);
}

#[test]
fn wink_is_answered_and_reported() {
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    h.handle_report(&init_packet(cid, 0x08, 0, &[]), now);
    assert_eq!(h.poll_event(), Some(Event::Wink));
    assert_eq!(drain(&mut h), vec![(cid, 0x08, vec![])]);
}

#[test]
fn msg_is_dispatched_when_supported() {
    let mut h = CtapHid::new(Config {
        cbor: true,
        msg: true,
        wink: false,
        version: (0, 1, 0),
    });
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    // WINK not advertised → INVALID_CMD.
    h.handle_report(&init_packet(cid, 0x08, 0, &[]), now);
    expect_error(&mut h, cid, HidError::InvalidCmd);
    h.handle_report(&init_packet(cid, 0x03, 3, &[0, 3, 0]), now);
    let Some(Event::Request { kind, data, .. }) = h.poll_event() else {
        panic!()
    };
    assert_eq!((kind, data), (RequestKind::Msg, vec![0, 3, 0]));
}

#[test]
fn short_reports_are_zero_padded() {
    let mut h = hid();
    let now = Instant::now();
    let mut r = BROADCAST_CID.to_be_bytes().to_vec();
    r.extend_from_slice(&[0x86, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    h.handle_report(&r, now);
    assert_eq!(drain(&mut h).len(), 1);
    // An empty report is an all-zero continuation packet on CID 0: ignored, no panic.
    h.handle_report(&[], now);
    assert!(drain(&mut h).is_empty());
}

#[test]
fn cbor_without_its_command_byte_is_invalid_len() {
    // §11.2.9.1.2: a CTAPHID_CBOR message carries 1..n+1 bytes (the CTAP command byte,
    // then CBOR). BCNT 0 is a framing error, answered at this layer like every other
    // length violation, and never reaches the application.
    let mut h = hid();
    let now = Instant::now();
    let cid = allocate(&mut h, now);
    h.handle_report(&init_packet(cid, 0x10, 0, &[]), now);
    expect_error(&mut h, cid, HidError::InvalidLen);
    assert!(h.poll_event().is_none());
    assert!(!h.is_busy());
    // The channel works on: one command byte is a whole CBOR message.
    h.handle_report(&init_packet(cid, 0x10, 1, &[0x04]), now);
    assert!(matches!(
        h.poll_event(),
        Some(Event::Request { data, .. }) if data == [0x04]
    ));
}
