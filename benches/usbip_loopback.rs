//! End-to-end benchmark over USB/IP loopback: a `vkey serve` process and a host that
//! behaves like Linux's usbhid (one interrupt-IN URB always outstanding).
//!
//!     cargo bench --bench usbip_loopback
//!
//! Measures the round trip of CTAPHID PING (64 B, 1 KiB, 7609 B) and of getInfo
//! (p50 / p99 / ops/s), the server's resident memory, and its CPU time and wake-ups over 10 s idle with an
//! IN URB held. Prints a Markdown table. Figures, not assertions: speed targets live
//! here, never in tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vkey::usbip::client::{Client, Reply};
use vkey::usbip::protocol::{DIR_IN, DIR_OUT};

/// A host with one IN URB always pending, like usbhid with hidraw open.
struct Host {
    c: Client,
    in_seq: u32,
    cid: u32,
}

impl Host {
    fn new(addr: SocketAddr) -> Host {
        let mut c = Client::import(addr, "1-1").expect("import");
        c.enumerate().expect("enumerate");
        let in_seq = c.submit(1, DIR_IN, [0; 8], 64, &[]).unwrap();
        let mut h = Host {
            c,
            in_seq,
            cid: 0xffff_ffff,
        };
        let r = h.transact(0x06, b"benchmrk");
        h.cid = u32::from_be_bytes(r[8..12].try_into().unwrap());
        h
    }

    /// Waits for the IN URB to complete; resubmits it at once (as usbhid does).
    fn next_report(&mut self) -> Vec<u8> {
        loop {
            let in_seq = self.in_seq;
            match self.c.recv_with_data(|s| s == in_seq).unwrap() {
                Reply::Submit { seqnum, data, .. } if seqnum == in_seq => {
                    self.in_seq = self.c.submit(1, DIR_IN, [0; 8], 64, &[]).unwrap();
                    return data;
                }
                Reply::Submit { .. } => continue, // an OUT completion
                r => panic!("unexpected {r:?}"),
            }
        }
    }

    /// Sends one CTAPHID message and returns the response payload.
    fn transact(&mut self, cmd: u8, payload: &[u8]) -> Vec<u8> {
        let mut first = self.cid.to_be_bytes().to_vec();
        first.extend_from_slice(&[cmd | 0x80, (payload.len() >> 8) as u8, payload.len() as u8]);
        let n = payload.len().min(57);
        first.extend_from_slice(&payload[..n]);
        first.resize(64, 0);
        self.c.submit(1, DIR_OUT, [0; 8], 64, &first).unwrap();
        for (seq, chunk) in payload[n..].chunks(59).enumerate() {
            let mut r = self.cid.to_be_bytes().to_vec();
            r.push(seq as u8);
            r.extend_from_slice(chunk);
            r.resize(64, 0);
            self.c.submit(1, DIR_OUT, [0; 8], 64, &r).unwrap();
        }
        let r = self.next_report();
        assert_eq!(r[4], cmd | 0x80, "response command");
        let len = u16::from_be_bytes([r[5], r[6]]) as usize;
        let mut out = r[7..7 + len.min(57)].to_vec();
        while out.len() < len {
            let r = self.next_report();
            out.extend_from_slice(&r[5..5 + (len - out.len()).min(59)]);
        }
        out
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Reports a CTAPHID message of `len` bytes takes.
fn reports(len: usize) -> usize {
    1 + len.saturating_sub(57).div_ceil(59)
}

fn measure(h: &mut Host, name: &str, iters: usize, cmd: u8, payload: &[u8]) {
    let mut response_len = 0;
    for _ in 0..iters / 10 {
        response_len = h.transact(cmd, payload).len(); // warm-up
    }
    // Report pairs: the longer of the two directions.
    let pairs = reports(payload.len()).max(reports(response_len));
    let mut times = Vec::with_capacity(iters);
    let start = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        let r = h.transact(cmd, payload);
        times.push(t.elapsed());
        assert!(cmd != 0x01 || r == payload);
    }
    let total = start.elapsed();
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "| {name} | {iters} | {:.1} µs | {:.1} µs | {:.0} | {:.1} µs |",
        p50.as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        iters as f64 / total.as_secs_f64(),
        p50.as_secs_f64() * 1e6 / pairs as f64,
    );
}

/// (utime + stime in clock ticks, context switches) of a process, summed over threads.
fn cpu_and_wakeups(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches")
                || l.starts_with("nonvoluntary_ctxt_switches")
            {
                switches += l.split_whitespace().last().unwrap().parse::<u64>().unwrap();
            }
        }
    }
    (ticks, switches)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs benches with no flag: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let idle_secs: u64 = std::env::var("VKEY_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vkey"))
        .args(["serve", "--ephemeral", "--listen", "127.0.0.1:0"])
        .env("VKEY_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vkey");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "vkey exited");
        if let Some(rest) = l.strip_prefix("listening on ") {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    let mut h = Host::new(addr);
    println!("vkey USB/IP loopback benchmark (server: release build, one IN URB always held)\n");
    println!("| round trip | n | p50 | p99 | ops/s | p50 per report pair |");
    println!("|---|---|---|---|---|---|");
    measure(&mut h, "PING 64 B", 5000, 0x01, &[0x5a; 64]);
    measure(&mut h, "PING 1 KiB", 2000, 0x01, &[0x5a; 1024]);
    measure(&mut h, "PING 7609 B", 500, 0x01, &[0x5a; 7609]);
    measure(&mut h, "getInfo", 5000, 0x10, &[0x04]);

    // Idle: the IN URB is held (Host always has one outstanding); nothing else happens.
    std::thread::sleep(Duration::from_millis(200));
    let (t0, s0) = cpu_and_wakeups(child.id());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (t1, s1) = cpu_and_wakeups(child.id());
    println!(
        "\nidle {idle_secs} s with an IN URB held: server CPU time {} ms, context switches (wake-ups) {}",
        (t1 - t0) * 10,
        s1 - s0
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kib = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "resident memory: {} KiB now (VmRSS), {} KiB at most (VmHWM)",
        kib("VmRSS:"),
        kib("VmHWM:")
    );
    drop(h);
    let _ = child.kill();
    let _ = child.wait();
}
