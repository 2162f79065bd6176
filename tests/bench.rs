//! `vkey bench` smoke runs against local vkey processes: a few operations each, checked
//! for sane JSON (every operation succeeded, signatures verified, server CPU known).
//! Not a timing: speed lives in the benchmark figures, never in assertions.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;

const VKEY: &str = env!("CARGO_BIN_EXE_vkey");

fn bench(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(VKEY)
        .arg("bench")
        .args(args)
        .env_remove("VKEY_BENCH_PIN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn results<'a>(j: &'a Value, op: &str) -> Vec<&'a Value> {
    j["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == op)
        .collect()
}

#[test]
fn every_operation_runs_and_is_verified() {
    let (code, j, err) = bench(&[
        "--spawn",
        "1",
        "--pin",
        "4321abcd",
        "--op",
        "all",
        "--count",
        "3",
        "--warmup",
        "1",
        "--verify-every",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["mode"], "alternating");
    let t = &j["targets"][0];
    assert_eq!(t["product"], "vkey virtual FIDO2 security key");
    assert!(t["pin"].as_str().unwrap().contains("protocol 2"), "{t}");
    assert!(t["server_pid"].as_u64().is_some());
    for name in [
        "ping-64",
        "ping-1k",
        "ping-7609",
        "getinfo",
        "mc",
        "ga",
        "ga-rk",
        "mixed",
        "mc-pin",
        "mc-rk-pin",
        "ga-pin",
        "ga-rk-pin",
        "mixed-pin",
    ] {
        let rs = results(&j, name);
        assert_eq!(rs.len(), 1, "{name}");
        let r = rs[0];
        assert_eq!(r["attempted"], 3, "{name}: {r}");
        assert_eq!(r["ok"], 3, "{name}: {r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{name}: {r}");
        let p50 = r["p50_us"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= r["p99_us"].as_f64().unwrap(), "{r}");
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(r["p50_ratio_to_first"], 1.0);
        assert!(r["server_cpu_us_per_op"].as_f64().unwrap() > 0.0, "{r}");
        if name.starts_with("mc") || name.starts_with("ga") || name.starts_with("mixed") {
            assert!(r["signatures_verified"].as_u64().unwrap() >= 3, "{r}");
        }
        if name.ends_with("-pin") {
            let tok = &r["token"];
            assert!(tok["n"].as_u64().unwrap() >= 3, "{r}");
            assert!(tok["server_cpu_us_per_token"].as_f64().unwrap() > 0.0);
        }
    }
    assert_eq!(results(&j, "mc")[0]["attestation"], "packed");
    // A PIN is set now: a discoverable credential without a token is refused, and that
    // is a counted result, not a failure of the run.
    let r = results(&j, "mc-rk")[0];
    assert_eq!(r["ok"], 0);
    assert_eq!(r["errors"]["CTAP2_ERR_PUAT_REQUIRED"], 3, "{r}");
}

#[test]
fn two_keys_alternate_and_concurrent_sweep_reports_throughput() {
    let (code, j, err) = bench(&[
        "--spawn",
        "2",
        "--spawn-arg=--attestation",
        "--spawn-arg=none",
        "--op",
        "ga=4",
        "--op",
        "mc=2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rs = results(&j, "ga");
    assert_eq!(rs.len(), 2);
    assert!(rs.iter().all(|r| r["ok"] == 4), "{rs:?}");
    assert!(rs[1]["p50_ratio_to_first"].as_f64().unwrap() > 0.0);
    assert_eq!(results(&j, "mc")[0]["attestation"], "none");

    let (code, j, err) = bench(&[
        "--spawn",
        "2",
        "--op",
        "ping-64=5",
        "--concurrent",
        "--sweep",
        "--repeat",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["mode"], "concurrent");
    let tp = j["throughput"].as_array().unwrap();
    assert_eq!(tp.len(), 2, "{tp:?}");
    assert_eq!(tp[0]["targets"], 1);
    assert_eq!(tp[1]["targets"], 2);
    assert_eq!(tp[1]["ok"], 10);
    assert_eq!(tp[1]["runs"], 2);
    assert!(tp[1]["aggregate_ops_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        tp[1]["server_cpu_us_per_op"].as_f64().unwrap() > 0.0,
        "{tp:?}"
    );
    assert!(
        tp[1]["client_cpu_us_per_op"].as_f64().unwrap() > 0.0,
        "{tp:?}"
    );
}

/// A "key" that accepts the connection and answers garbage: reported as down, and the
/// run goes on with the good key.
#[test]
fn a_broken_peer_is_a_result_not_a_crash() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut b = [0u8; 40];
            let _ = s.read(&mut b);
            let _ = s.write_all(&[0xff; 400]);
        }
    });
    let target = format!("junk={addr}/1-1");
    let (code, j, err) = bench(&[
        "--spawn",
        "1",
        "--target",
        &target,
        "--op",
        "getinfo=2",
        "--timeout-ms",
        "3000",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(j["targets"][1]["down"].as_str().is_some(), "{j}");
    let rs = results(&j, "getinfo");
    assert_eq!(rs[0]["ok"], 2);
    assert_eq!(rs[1]["ok"], 0);
    assert!(rs[1]["errors"]["target_down"].as_u64().unwrap() >= 1, "{j}");

    // Nothing reachable at all: a one-line error, exit 1.
    let (code, _, err) = bench(&["--target", &target, "--timeout-ms", "2000"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vkey: error: no key could be reached"),
        "{err}"
    );
}

/// Servers that import correctly and then misbehave in the URB phase: a reply longer
/// than the URB asked for, a reply to a seqnum never sent, random bytes, a connection
/// closed in the middle of a frame. Each is a key that is down, never a panic.
#[test]
fn hostile_usbip_servers_do_not_crash_the_host() {
    let behaviours: Vec<Vec<u8>> = vec![
        // RET_SUBMIT seq 1 (device descriptor, 8 bytes asked) claiming 60000 bytes.
        ret_submit(1, 60000),
        // RET_SUBMIT for seqnum 77, never submitted.
        ret_submit(77, 0),
        // Random bytes (a fixed xorshift sequence).
        {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            (0..3000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        },
        // Half a header, then close.
        ret_submit(1, 8)[..20].to_vec(),
    ];
    for (i, tail) in behaviours.into_iter().enumerate() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Some(Ok(mut s)) = l.incoming().next() {
                let mut req = [0u8; 40];
                let _ = s.read_exact(&mut req);
                let mut rep = vec![0x01, 0x11, 0x00, 0x03, 0, 0, 0, 0];
                let mut rec = vec![0u8; 312];
                rec[256..259].copy_from_slice(b"1-1");
                rep.extend_from_slice(&rec);
                rep.extend_from_slice(&tail);
                let _ = s.write_all(&rep);
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
        let target = format!("{addr}/1-1");
        let (code, _, err) = bench(&["--target", &target, "--timeout-ms", "2000"]);
        assert_eq!(code, 1, "behaviour {i}: {err}");
        assert!(
            err.contains("no key could be reached"),
            "behaviour {i}: {err}"
        );
    }
}

fn ret_submit(seqnum: u32, actual_length: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [3u32, seqnum, 0, 0, 0, 0, actual_length, 0, 0, 0] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[0u8; 8]);
    v
}

#[test]
fn flags_are_checked() {
    let (code, _, err) = bench(&["--spawn", "1", "--op", "ga-pin"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs --pin"), "{err}");
    let (code, _, err) = bench(&["--spawn", "1", "--op", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown operation"), "{err}");
    let (code, _, err) = bench(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing to measure"), "{err}");
    let (code, _, _) = bench(&["--target", "no-port"]);
    assert_eq!(code, 2);
}
