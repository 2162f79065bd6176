//! `vkey` as a user runs it: flags, start-up output, one-line errors, exit codes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::process::{VKEY, assert_one_error_line, read_lines, temp_path};

/// Runs to completion; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VKEY)
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Starts `vkey serve` and returns it with the start-up lines it printed.
fn serve(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(VKEY)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = read_lines(&mut out, 3, |_| false);
    if lines.len() < 3 {
        // It stopped before it was ready: show why instead of an index error later.
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "vkey serve {args:?} stopped at start: {lines:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (child, lines)
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0);
    assert_one_error_line(stderr, needle);
}

#[test]
fn help_documents_every_flag() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--busid",
        "--store",
        "--ephemeral",
        "--allow-remote",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve"));
}

#[test]
fn start_up_prints_address_busid_and_attach_command() {
    let (mut child, lines) = serve(&["--ephemeral", "--listen", "127.0.0.1:0", "--busid", "2-3"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines[0].contains("serial"), "{lines:?}");
    let port = lines[1]
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(lines[1].ends_with("bus id 2-3"), "{lines:?}");
    assert!(
        lines[2].contains(&format!(
            "usbip --tcp-port {port} attach -r 127.0.0.1 -b 2-3"
        )),
        "{lines:?}"
    );
}

#[test]
fn serial_is_stable_per_store() {
    let dir = temp_path("cli", "serial");
    let d = dir.to_str().unwrap();
    let serial = |lines: &[String]| {
        lines[0]
            .split("serial ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    let (mut a, la) = serve(&["--store", d, "--listen", "127.0.0.1:0"]);
    a.kill().unwrap();
    a.wait().unwrap();
    let (mut b, lb) = serve(&["--store", d, "--listen", "127.0.0.1:0"]);
    // While b runs, a second process on the same store is refused.
    let (code, _, err) = run(&["serve", "--store", d, "--listen", "127.0.0.1:0"]);
    assert_one_line_error(code, &err, "in use by another vkey process");
    b.kill().unwrap();
    b.wait().unwrap();
    assert_eq!(serial(&la), serial(&lb));
    let (mut e1, l1) = serve(&["--ephemeral", "--listen", "127.0.0.1:0"]);
    e1.kill().unwrap();
    e1.wait().unwrap();
    assert_ne!(serial(&l1), serial(&la));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_loopback_needs_allow_remote_and_warns() {
    let (code, _, err) = run(&["serve", "--ephemeral", "--listen", "0.0.0.0:0"]);
    assert_one_line_error(code, &err, "--allow-remote");
    let mut child = Command::new(VKEY)
        .args([
            "serve",
            "--ephemeral",
            "--listen",
            "0.0.0.0:0",
            "--allow-remote",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut l = String::new();
    err.read_line(&mut l).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        l.contains("WARNING") && l.contains("NO authentication"),
        "{l}"
    );
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["serve", "--ephemeral", "--listen", &addr]);
    assert_one_line_error(code, &err, "cannot listen on");
}

#[test]
fn bad_flags_and_bad_store_fail_cleanly() {
    let (code, _, err) = run(&["serve", "--no-such-flag"]);
    assert_ne!(code, 0);
    assert!(err.contains("--no-such-flag") && !err.contains("panicked"));
    let (code, _, err) = run(&["serve", "--listen", "nonsense"]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"));
    let (code, _, err) = run(&["serve", "--busid", "a b"]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"));
    let (code, _, err) = run(&["serve", "--ephemeral", "--store", "/tmp/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be used with"));
    // A store path that is a file, and a store file that is garbage.
    let dir = temp_path("cli", "bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plainfile");
    std::fs::write(&file, b"x").unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        file.to_str().unwrap(),
    ]);
    assert_one_line_error(code, &err, "cannot open the store");
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("vkey-store.cbor"), b"\xff\xfe garbage").unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_one_line_error(code, &err, "not a vkey store file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--presence prompt`: the numbered question appears on stderr; `y N` approves, `n N`
/// denies; a bare or stale answer approves nothing.
#[test]
fn presence_prompt_is_answered_on_the_terminal() {
    use std::io::Write;
    use support::ctaphid::{init_with, report};
    use vkey::usbip::client::Client;
    let mut child = Command::new(VKEY)
        .args([
            "serve",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
            "--presence",
            "prompt",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = read_lines(&mut out, usize::MAX, |l| l.starts_with("listening on "));
    let addr: std::net::SocketAddr = lines
        .last()
        .and_then(|l| l.strip_prefix("listening on "))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no address in {lines:?}"));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut c = Client::import(addr, "1-1").unwrap();
    c.enumerate().unwrap();
    let cid = init_with(&mut c, b"12345678");
    for (answer, status) in [("y", 0x00u8), ("n", 0x27)] {
        c.write_report(&report(cid, 0x10, &[0x0b])).unwrap(); // authenticatorSelection
        let number = loop {
            let mut l = String::new();
            assert!(err.read_line(&mut l).unwrap() > 0, "vkey exited");
            if let Some(rest) = l.strip_prefix("vkey: touch request ") {
                break rest.split(':').next().unwrap().parse::<u64>().unwrap();
            }
        };
        // Without the number, or with another request's: not answered.
        for wrong in [answer.to_string(), format!("{answer} {}", number + 5)] {
            writeln!(stdin, "{wrong}").unwrap();
            loop {
                let mut l = String::new();
                assert!(err.read_line(&mut l).unwrap() > 0, "vkey exited");
                if l.contains("not answered") || l.contains("say which request") {
                    break;
                }
            }
        }
        writeln!(stdin, "{answer} {number}").unwrap();
        let r = loop {
            let r = c.read_report().unwrap();
            if r[4] != 0xbb {
                break r; // not a keepalive
            }
        };
        assert_eq!(&r[4..8], &[0x90, 0, 1, status], "answer {answer}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(VKEY);
    cmd.args(args)
        .env_remove("VKEY_PIN")
        .env_remove("VKEY_NEW_PIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before it reads standard input (say, `pin set` on a store
    // with a PIN) may exit before this write: that broken pipe is not the test's result.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn pin_set_and_change_offline_and_start_up_pin_rules() {
    let dir = temp_path("cli", "pin");
    let _d = dir.to_str().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let pin_file = dir.join("pin.txt");
    std::fs::write(&pin_file, "1234abcd\n").unwrap();
    let pf = pin_file.to_str().unwrap();
    let store = dir.join("store");
    let s = store.to_str().unwrap();

    // Too short for the policy.
    let (code, _, err) = run_env(&["pin", "set", "--store", s], &[], "123\n");
    assert_one_line_error(code, &err, "policy");
    // From stdin.
    let (code, out, _) = run_env(&["pin", "set", "--store", s], &[], "first-pin\n");
    assert_eq!(code, 0);
    assert!(out.contains("PIN set"));
    let (code, _, err) = run_env(&["pin", "set", "--store", s], &[], "again\n");
    assert_one_line_error(code, &err, "already has a PIN");
    // change: wrong current PIN counts a retry.
    let (code, _, err) = run_env(
        &["pin", "change", "--store", s],
        &[("VKEY_PIN", "nope"), ("VKEY_NEW_PIN", "x1234")],
        "",
    );
    assert_one_line_error(code, &err, "wrong PIN (7 retries left)");
    let (code, out, _) = run_env(
        &["pin", "change", "--store", s, "--new-pin-file", pf],
        &[("VKEY_PIN", "first-pin")],
        "",
    );
    assert_eq!(code, 0, "{out}");

    // serve with the same PIN starts; with another one it refuses; both given: refused.
    let (mut child, lines) = serve(&["--store", s, "--listen", "127.0.0.1:0", "--pin-file", pf]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines[0].contains("PIN matches"), "{lines:?}");
    let (code, _, err) = run_env(
        &["serve", "--store", s, "--listen", "127.0.0.1:0"],
        &[("VKEY_PIN", "different")],
        "",
    );
    assert_one_line_error(code, &err, "different PIN");
    let (code, _, err) = run_env(
        &[
            "serve",
            "--store",
            s,
            "--listen",
            "127.0.0.1:0",
            "--pin-file",
            pf,
        ],
        &[("VKEY_PIN", "x")],
        "",
    );
    assert_one_line_error(code, &err, "given twice");
    let (code, _, err) = run_env(
        &[
            "serve",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
            "--pin-file",
            "/nonexistent/pin",
        ],
        &[],
        "",
    );
    assert_one_line_error(code, &err, "cannot read the PIN file");
    // No PIN value on the command line exists to be seen by ps.
    let (_, help, _) = run(&["serve", "--help"]);
    assert!(
        help.contains("--pin-file") && !help.contains("--pin <"),
        "{help}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn processes_started_together_all_get_a_control_socket() {
    // Every vkey with the default socket path races for the same name; each must
    // come up (one on control.sock, the others on control-PID.sock beside it).
    let dir = temp_path("cli", "xdg");
    std::fs::create_dir_all(&dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let children: Vec<Child> = (0..6)
        .map(|_| {
            Command::new(VKEY)
                .args(["serve", "--ephemeral", "--listen", "127.0.0.1:0"])
                .env("XDG_RUNTIME_DIR", &dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // All stay alive until each has said where it listens.
    let mut sockets = Vec::new();
    let mut running = Vec::new();
    for mut c in children {
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let lines = read_lines(&mut out, 6, |l| l.starts_with("control socket: "));
        let socket = lines
            .last()
            .and_then(|l| l.strip_prefix("control socket: "))
            .map(str::to_string);
        match socket {
            Some(s) => sockets.push(s),
            None => {
                let _ = c.kill();
                let out = c.wait_with_output().unwrap();
                panic!(
                    "no control socket: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        running.push(c);
    }
    for mut c in running {
        let _ = c.kill();
        let _ = c.wait();
    }
    sockets.sort();
    sockets.dedup();
    assert_eq!(sockets.len(), 6, "{sockets:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
