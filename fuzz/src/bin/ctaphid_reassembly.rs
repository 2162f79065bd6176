//! CTAPHID with a moving clock: the input is a series of (clock step, 64-byte report).
//! A step byte advances the clock by 0–2.55 s (past the 1 s message timeout and the
//! 100 ms keepalive); timers fire when due, as the server's loop fires them; requests
//! are answered at once or later, with responses up to the largest message.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vkey::ctaphid::{self, CtapHid, Event, MAX_MESSAGE_LEN, RequestKind};

fuzz_target!(|data: &[u8]| {
    let mut hid = CtapHid::new(ctaphid::Config {
        cbor: true,
        msg: true,
        wink: true,
        version: (1, 2, 3),
    });
    let mut now = Instant::now();
    let mut pending = None;
    for chunk in data.chunks(65) {
        let (step, report) = chunk.split_first().unwrap_or((&0, &[]));
        now += Duration::from_millis(u64::from(*step) * 10);
        if hid.poll_timeout().is_some_and(|t| t <= now) {
            hid.handle_timeout(now);
        }
        hid.handle_report(report, now);
        while let Some(ev) = hid.poll_event() {
            match ev {
                Event::Request {
                    txn, kind, data, ..
                } => {
                    assert!(data.len() <= MAX_MESSAGE_LEN);
                    // §11.2.9.1.2: a CBOR message carries at least its command byte.
                    assert!(kind != RequestKind::Cbor || !data.is_empty());
                    // Answer now (echo) or on the next report, with a length from the data.
                    let len = data
                        .first()
                        .map_or(0, |&b| usize::from(b) * 31)
                        .min(MAX_MESSAGE_LEN);
                    if step % 2 == 0 {
                        hid.respond(txn, &vec![0u8; len]);
                    } else {
                        pending = Some((txn, len));
                    }
                }
                Event::Cancel { txn } | Event::Abort { txn } => {
                    if pending.is_some_and(|(t, _)| t == txn) && step % 3 == 0 {
                        pending = None;
                    }
                }
                Event::Wink => {}
            }
        }
        if *step % 2 == 1
            && let Some((txn, len)) = pending.take()
        {
            hid.respond(txn, &vec![0x2d; len]);
        }
        while let Some(r) = hid.poll_report() {
            assert_eq!(r.len(), 64);
        }
    }
});
