//! The control CLI (`vkey status|cred|presence|uv|pin|replug|reset|trace`) against a
//! running `vkey serve`: each command, and its errors as one line with exit code 1.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::process::{VKEY, assert_one_error_line, assert_refused, drain, read_lines, temp_path};

struct Served {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(tag: &str, args: &[&str]) -> Served {
    let dir = temp_path("ctlcli", tag);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("c.sock");
    let child = serve_at(&socket, args);
    Served { child, socket, dir }
}

/// `vkey serve --listen 127.0.0.1:0 --control SOCKET ARGS`, once it says it serves its
/// control interface at `socket`.
fn serve_at(socket: &Path, args: &[&str]) -> Child {
    let mut child = Command::new(VKEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--control"])
        .arg(socket)
        .args(args)
        .env_remove("VKEY_PIN")
        .env_remove("VKEY_CONTROL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = read_lines(&mut out, usize::MAX, |l| l.starts_with("control socket: "));
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("control socket: {}", socket.display()).as_str()),
        "vkey serve exited: {lines:?}"
    );
    drain(out);
    child
}

/// Runs `vkey ARGS` against `socket`; (exit code, stdout, stderr).
fn vkey(socket: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(VKEY)
        .args(args)
        .env("VKEY_CONTROL", socket)
        .env_remove("VKEY_PIN")
        .env_remove("VKEY_NEW_PIN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before it reads standard input.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let (code, out, err) = vkey(socket, args, "");
    assert_eq!(code, 0, "vkey {args:?}: {out}{err}");
    out
}

fn fails(socket: &Path, args: &[&str], stdin: &str, needle: &str) {
    let (code, out, err) = vkey(socket, args, stdin);
    assert_eq!(code, 1, "vkey {args:?} should fail: {out}{err}");
    assert_one_error_line(&err, needle);
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn credential_json(id: &[u8]) -> String {
    let key = vkey::crypto::CredentialKey::generate(vkey::crypto::Algorithm::Es256).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    format!(
        r#"{{"credentialId":"{}","isResidentCredential":true,"rpId":"example.com","privateKey":"{}","userHandle":"{}","userName":"cli-user","signCount":5}}"#,
        b64(id),
        b64(&der),
        b64(&[b"user-", id].concat())
    )
}

#[test]
fn credential_commands() {
    let s = serve("cred", &["--ephemeral"]);
    let sock = &s.socket;
    assert!(ok(sock, &["status"]).contains("1-1: not attached, presence auto, PIN not set"));
    assert_eq!(ok(sock, &["cred", "list"]), "");
    let file = s.dir.join("cred.json");
    std::fs::write(&file, credential_json(b"cli-cred-1")).unwrap();
    let id = b64(b"cli-cred-1");
    assert!(ok(sock, &["cred", "add", file.to_str().unwrap()]).contains(&id));
    fails(
        sock,
        &["cred", "add", file.to_str().unwrap()],
        "",
        "exists already",
    );
    // From standard input too; a bad one is refused and changes nothing.
    let (code, _, err) = vkey(sock, &["cred", "add"], &credential_json(b"cli-cred-2"));
    assert_eq!(code, 0, "{err}");
    fails(
        sock,
        &["cred", "add"],
        "{\"credentialId\": \"!!\"}",
        "bad JSON body",
    );
    fails(sock, &["cred", "add"], "not json", "not JSON");
    let list = ok(sock, &["cred", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(&id) && list.contains("example.com") && list.contains("cli-user"));
    let shown = ok(sock, &["cred", "show", &id]);
    assert!(
        shown.contains("\"signCount\": 5") && !shown.contains("privateKey"),
        "{shown}"
    );
    let exported = ok(sock, &["cred", "export", &id]);
    assert!(exported.contains("privateKey"), "{exported}");
    let all: serde_json::Value = serde_json::from_str(&ok(sock, &["cred", "export"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    fails(
        sock,
        &["cred", "show", "bm8tc3VjaA"],
        "",
        "no such credential",
    );
    fails(sock, &["cred", "show", "***"], "", "not base64url");
    assert!(ok(sock, &["cred", "rm", &id]).contains(&id));
    fails(sock, &["cred", "rm", &id], "", "no such credential");
    assert!(ok(sock, &["cred", "clear"]).contains("deleted 1"));
    assert_eq!(ok(sock, &["cred", "list"]), "");
    fails(
        sock,
        &["cred", "list", "--key", "7-7"],
        "",
        "no key with bus id",
    );
}

#[test]
fn presence_uv_pin_replug_reset_commands() {
    let s = serve("switches", &["--ephemeral", "--uv"]);
    let sock = &s.socket;
    assert!(ok(sock, &["presence", "manual"]).contains("manual"));
    assert!(ok(sock, &["status"]).contains("presence manual"));
    assert!(ok(sock, &["presence", "pending"]).contains("no request waits"));
    fails(sock, &["presence", "approve"], "", "no request waits");
    fails(
        sock,
        &["presence", "deny-pending", "3"],
        "",
        "no request waits",
    );
    ok(sock, &["presence", "deny"]);
    ok(sock, &["presence", "auto"]);
    assert!(ok(sock, &["status"]).contains("presence auto"));
    assert!(ok(sock, &["uv", "fail"]).contains("fail"));
    assert!(ok(sock, &["status"]).contains("built-in UV fail"));
    ok(sock, &["uv", "pass"]);
    // PIN online: set (from standard input), set again refused, change.
    let (code, out, err) = vkey(sock, &["pin", "set"], "4321abcd\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(ok(sock, &["status"]).contains("PIN set (8 retries)"));
    fails(sock, &["pin", "set"], "4321abcd\n", "already has a PIN");
    fails(
        sock,
        &["pin", "change"],
        "wrong-pin\nnew-pin-1\n",
        "does not match",
    );
    let (code, out, err) = vkey(sock, &["pin", "change"], "4321abcd\nnew-pin-1\n");
    assert_eq!(code, 0, "{out}{err}");
    fails(sock, &["pin", "change"], "new-pin-1\n12\n", "policy");
    assert!(ok(sock, &["replug"]).contains("no host was attached"));
    assert!(ok(sock, &["reset"]).contains("reset"));
    assert!(ok(sock, &["status"]).contains("PIN not set"));
}

#[test]
fn trace_follows_events() {
    let s = serve("trace", &["--ephemeral"]);
    let mut trace = Command::new(VKEY)
        .arg("trace")
        .env("VKEY_CONTROL", &s.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines are read by a thread: a read on the pipe blocks until `vkey trace` prints.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = trace.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // The subscription is made when the stream is served: an import made before it is
    // not seen, so import again until a line comes (generous waits: a loaded machine).
    let file = s.dir.join("cred.json");
    let mut seen = String::new();
    for i in 0..50u8 {
        std::fs::write(&file, credential_json(&[b'T', i])).unwrap();
        ok(&s.socket, &["cred", "add", file.to_str().unwrap()]);
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
            seen = l;
            break;
        }
    }
    let _ = trace.kill();
    let _ = trace.wait();
    assert!(
        seen.contains("1-1 credentialAdded rpId=\"example.com\""),
        "{seen}"
    );
}

#[test]
fn several_keys_need_key_and_errors_without_a_server() {
    let s = serve("keys", &["--ephemeral", "--keys", "2"]);
    let status = ok(&s.socket, &["status"]);
    assert!(
        status.contains("1-1: ") && status.contains("1-2: "),
        "{status}"
    );
    fails(
        &s.socket,
        &["cred", "list"],
        "",
        "several keys run (1-1, 1-2)",
    );
    assert_eq!(ok(&s.socket, &["cred", "list", "--key", "1-2"]), "");
    let nowhere = s.dir.join("nothing.sock");
    fails(
        &nowhere,
        &["status"],
        "",
        "cannot reach vkey's control socket",
    );
    // A second vkey on the same --control socket is refused; a stale socket is replaced.
    assert_refused(
        Command::new(VKEY)
            .args([
                "serve",
                "--ephemeral",
                "--listen",
                "127.0.0.1:0",
                "--control",
            ])
            .arg(&s.socket),
        "in use by another vkey process",
    );
}

#[test]
fn stale_socket_is_replaced() {
    let dir = temp_path("ctlcli", "stale");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.sock");
    // A socket file nobody listens on (its process is gone).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut s = serve_at(&path, &["--ephemeral"]);
    assert!(ok(&path, &["status"]).contains("1-1"));
    let _ = s.kill();
    let _ = s.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attach_without_vhci_says_what_to_run() {
    if Path::new("/sys/devices/platform/vhci_hcd.0/attach").exists() {
        return; // vhci-hcd is here: nothing to refuse
    }
    let err = assert_refused(
        Command::new(VKEY).args([
            "serve",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
            "--attach",
        ]),
        "sudo modprobe vhci-hcd",
    );
    assert_one_error_line(&err, "linux-modules-extra-$(uname -r)");
}
