//! USB/IP from the wire as the server reads it: the OP request (header, bus id), then
//! URB commands (CMD_SUBMIT / CMD_UNLINK with their bounded lengths), each control
//! request answered by endpoint 0 and cut to wLength and the URB buffer like the
//! server does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vkey::usbip::DeviceIdentity;
use vkey::usbip::device::{Control, ControlOutcome};
use vkey::usbip::protocol::{
    DIR_IN, MAX_IN_LEN, MAX_OUT_LEN, UrbCommand, parse_fixed_str, read_op_header, read_urb_command,
    ret_submit,
};

fn identity() -> DeviceIdentity {
    DeviceIdentity {
        vendor_id: 0x1209,
        product_id: 0x0001,
        device_release: 0x0100,
        manufacturer: "vkey".into(),
        product: "vkey virtual FIDO2 security key".into(),
        serial: "0123456789AB".into(),
    }
}

async fn session(mut input: &[u8]) {
    let Ok(op) = read_op_header(&mut input).await else {
        return;
    };
    if op.code == 0x8003 {
        let Some((busid, rest)) = input.split_at_checked(32) else {
            return;
        };
        let _ = parse_fixed_str(busid);
        input = rest;
    }
    let mut control = Control::new(identity());
    while let Ok(cmd) = read_urb_command(&mut input).await {
        if let UrbCommand::Submit {
            direction,
            ep: 0,
            buffer_len,
            setup,
            data,
            ..
        } = cmd
        {
            assert!(data.len() as u32 <= MAX_OUT_LEN && buffer_len <= MAX_IN_LEN);
            if let ControlOutcome::Data(d) = control.handle(&setup, &data)
                && direction == DIR_IN
            {
                let n = d.len().min(setup.length as usize).min(buffer_len as usize);
                let reply = ret_submit(1, 0, n as u32, &d[..n]);
                assert_eq!(reply.len(), 48 + n);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Reading from a byte slice never waits: one poll of a current-thread runtime.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(session(data));
});
