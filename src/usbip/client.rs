//! A minimal blocking USB/IP *host* (the side `usbip attach` plays), used by the
//! integration tests and the loopback benchmark to talk to the server exactly as the
//! Linux vhci driver does, without a kernel.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::protocol::*;

/// A device as listed by OP_REP_DEVLIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDevice {
    pub busid: String,
    pub vendor_id: u16,
    pub product_id: u16,
    pub speed: u32,
    pub interface_classes: Vec<u8>,
}

/// A reply of the URB phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Submit {
        seqnum: u32,
        status: i32,
        actual_length: u32,
        data: Vec<u8>,
    },
    Unlink {
        seqnum: u32,
        status: i32,
    },
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_array<const N: usize>(s: &mut TcpStream) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn op_request(code: u16) -> Vec<u8> {
    let mut v = USBIP_VERSION.to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v
}

/// OP_REQ_DEVLIST on a fresh connection.
pub fn list_devices(addr: SocketAddr) -> io::Result<Vec<RemoteDevice>> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(&op_request(OP_REQ_DEVLIST))?;
    let h: [u8; 12] = read_array(&mut s)?;
    if u16::from_be_bytes([h[2], h[3]]) != OP_REP_DEVLIST || h[4..8] != [0; 4] {
        return Err(bad("bad OP_REP_DEVLIST header"));
    }
    let n = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let mut out = Vec::new();
    for _ in 0..n.min(64) {
        let rec: [u8; 312] = read_array(&mut s)?;
        let mut classes = Vec::new();
        for _ in 0..rec[311] {
            let i: [u8; 4] = read_array(&mut s)?;
            classes.push(i[0]);
        }
        out.push(RemoteDevice {
            busid: parse_fixed_str(&rec[256..288]),
            speed: u32::from_be_bytes([rec[296], rec[297], rec[298], rec[299]]),
            vendor_id: u16::from_be_bytes([rec[300], rec[301]]),
            product_id: u16::from_be_bytes([rec[302], rec[303]]),
            interface_classes: classes,
        });
    }
    Ok(out)
}

/// An imported device: the URB phase of one connection.
pub struct Client {
    stream: TcpStream,
    next_seqnum: u32,
}

impl Client {
    /// OP_REQ_IMPORT of `busid`; an error if the server refuses.
    pub fn import(addr: SocketAddr, busid: &str) -> io::Result<Client> {
        Client::import_over(TcpStream::connect(addr)?, busid)
    }

    /// OP_REQ_IMPORT over a stream the caller connected (and tuned) itself.
    pub fn import_over(mut stream: TcpStream, busid: &str) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        let mut req = op_request(OP_REQ_IMPORT);
        req.extend_from_slice(&fixed_str(busid, 32));
        stream.write_all(&req)?;
        let h: [u8; 8] = read_array(&mut stream)?;
        if u16::from_be_bytes([h[2], h[3]]) != OP_REP_IMPORT {
            return Err(bad("bad OP_REP_IMPORT header"));
        }
        if h[4..8] != [0; 4] {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "import refused",
            ));
        }
        let rec: [u8; 312] = read_array(&mut stream)?;
        if parse_fixed_str(&rec[256..288]) != busid {
            return Err(bad("recv different busid"));
        }
        Ok(Client {
            stream,
            next_seqnum: 1,
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends CMD_SUBMIT and returns its seqnum. `data` is the OUT payload.
    pub fn submit(
        &mut self,
        ep: u32,
        direction: u32,
        setup: [u8; 8],
        buffer_len: u32,
        data: &[u8],
    ) -> io::Result<u32> {
        let seqnum = self.next_seqnum;
        self.next_seqnum += 1;
        let mut v = Vec::with_capacity(48 + data.len());
        for x in [
            CMD_SUBMIT,
            seqnum,
            0x0001_0002,
            direction,
            ep,
            0,
            buffer_len,
            0,
            0,
            0,
        ] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&setup);
        v.extend_from_slice(data);
        self.stream.write_all(&v)?;
        Ok(seqnum)
    }

    /// Sends CMD_UNLINK for `victim` and returns the unlink's own seqnum.
    pub fn unlink(&mut self, victim: u32) -> io::Result<u32> {
        let seqnum = self.next_seqnum;
        self.next_seqnum += 1;
        let mut v = Vec::with_capacity(48);
        for x in [CMD_UNLINK, seqnum, 0x0001_0002, 0, 0, victim] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&[0u8; 24]);
        self.stream.write_all(&v)?;
        Ok(seqnum)
    }

    /// Reads the next RET_SUBMIT or RET_UNLINK.
    pub fn recv(&mut self) -> io::Result<Reply> {
        let h: [u8; 48] = read_array(&mut self.stream)?;
        let u = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        match u(0) {
            RET_SUBMIT => {
                let actual_length = u(24);
                if actual_length > MAX_IN_LEN {
                    return Err(bad("RET_SUBMIT too long"));
                }
                // Only IN replies carry data, and only the caller knows which seqnums
                // were IN: `recv_with_data` reads it.
                Ok(Reply::Submit {
                    seqnum: u(4),
                    status: u(20) as i32,
                    actual_length,
                    data: Vec::new(),
                })
            }
            RET_UNLINK => Ok(Reply::Unlink {
                seqnum: u(4),
                status: u(20) as i32,
            }),
            other => Err(bad(format!("unexpected reply {other:#x}"))),
        }
    }

    /// Reads a reply, pulling IN data for a RET_SUBMIT whose seqnum is in `in_seqnums`.
    pub fn recv_with_data(&mut self, is_in: impl Fn(u32) -> bool) -> io::Result<Reply> {
        match self.recv()? {
            Reply::Submit {
                seqnum,
                status,
                actual_length,
                ..
            } if is_in(seqnum) => {
                let mut data = vec![0u8; actual_length as usize];
                self.stream.read_exact(&mut data)?;
                Ok(Reply::Submit {
                    seqnum,
                    status,
                    actual_length,
                    data,
                })
            }
            r => Ok(r),
        }
    }

    /// A control IN transfer: returns (status, data).
    pub fn control_in(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        length: u16,
    ) -> io::Result<(i32, Vec<u8>)> {
        let setup = setup_bytes(request_type, request, value, index, length);
        let seq = self.submit(0, DIR_IN, setup, u32::from(length), &[])?;
        match self.recv_with_data(|s| s == seq)? {
            Reply::Submit {
                seqnum,
                status,
                data,
                ..
            } if seqnum == seq => Ok((status, data)),
            r => Err(bad(format!("unexpected {r:?}"))),
        }
    }

    /// A control OUT transfer: returns (status, actual_length).
    pub fn control_out(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        data: &[u8],
    ) -> io::Result<(i32, u32)> {
        let setup = setup_bytes(request_type, request, value, index, data.len() as u16);
        let seq = self.submit(0, DIR_OUT, setup, data.len() as u32, data)?;
        match self.recv()? {
            Reply::Submit {
                seqnum,
                status,
                actual_length,
                ..
            } if seqnum == seq => Ok((status, actual_length)),
            r => Err(bad(format!("unexpected {r:?}"))),
        }
    }

    /// What Linux does on attach: descriptors, SET_CONFIGURATION, SET_IDLE, report
    /// descriptor. Returns the report descriptor.
    pub fn enumerate(&mut self) -> io::Result<Vec<u8>> {
        let ok = |(st, d): (i32, Vec<u8>)| {
            if st == 0 {
                Ok(d)
            } else {
                Err(bad(format!("status {st}")))
            }
        };
        ok(self.control_in(0x80, 6, 0x0100, 0, 8)?)?;
        ok(self.control_in(0x80, 6, 0x0100, 0, 18)?)?;
        let c = ok(self.control_in(0x80, 6, 0x0200, 0, 9)?)?;
        let total = u16::from_le_bytes([c[2], c[3]]);
        ok(self.control_in(0x80, 6, 0x0200, 0, total)?)?;
        ok(self.control_in(0x80, 6, 0x0300, 0, 255)?)?;
        for i in 1..=3 {
            ok(self.control_in(0x80, 6, 0x0300 | i, 0x0409, 255)?)?;
        }
        if self.control_out(0x00, 9, 1, 0, &[])?.0 != 0 {
            return Err(bad("SET_CONFIGURATION failed"));
        }
        self.control_out(0x21, 0x0a, 0, 0, &[])?;
        ok(self.control_in(0x81, 6, 0x2200, 0, 34)?)
    }

    /// Writes one 64-byte report to interrupt OUT and waits for its RET_SUBMIT.
    pub fn write_report(&mut self, report: &[u8]) -> io::Result<()> {
        let seq = self.submit(1, DIR_OUT, [0; 8], report.len() as u32, report)?;
        match self.recv()? {
            Reply::Submit {
                seqnum,
                status: 0,
                actual_length,
                ..
            } if seqnum == seq && actual_length as usize == report.len() => Ok(()),
            r => Err(bad(format!("unexpected {r:?}"))),
        }
    }

    /// Submits an interrupt IN URB and waits for it to complete with a report.
    pub fn read_report(&mut self) -> io::Result<Vec<u8>> {
        let seq = self.submit(1, DIR_IN, [0; 8], 64, &[])?;
        self.wait_in(seq)
    }

    /// Waits for the RET_SUBMIT of the IN URB `seq`.
    pub fn wait_in(&mut self, seq: u32) -> io::Result<Vec<u8>> {
        match self.recv_with_data(|s| s == seq)? {
            Reply::Submit {
                seqnum,
                status: 0,
                data,
                ..
            } if seqnum == seq => Ok(data),
            r => Err(bad(format!("unexpected {r:?}"))),
        }
    }
}

pub fn setup_bytes(request_type: u8, request: u8, value: u16, index: u16, length: u16) -> [u8; 8] {
    let v = value.to_le_bytes();
    let i = index.to_le_bytes();
    let l = length.to_le_bytes();
    [request_type, request, v[0], v[1], i[0], i[1], l[0], l[1]]
}
