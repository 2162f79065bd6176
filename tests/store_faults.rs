//! A store that cannot be used as it is: `vkey serve` stops with one clear line and
//! exit code 1, and the store's files are left exactly as they were.

mod support;

use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::process::{VKEY, assert_refused, read_lines, temp_path};

fn tempdir(tag: &str) -> PathBuf {
    let d = temp_path("faults", tag);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// Starts `vkey serve --store DIR` until it listens (so the store exists), then kills it.
fn make_store(store: &Path, env: &[(&str, &str)]) {
    let mut child = Command::new(VKEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = read_lines(&mut out, 3, |l| l.starts_with("listening on"));
    let listening = lines.iter().any(|l| l.starts_with("listening on"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening, "vkey did not start on {}", store.display());
}

/// `vkey serve` on `store`: must fail with exit code 1 and one `vkey: error:` line
/// containing `needle`.
fn refuses(store: &Path, env: &[(&str, &str)], needle: &str) {
    assert_refused(
        Command::new(VKEY)
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
        needle,
    );
}

/// Every regular file of a store directory (not the control socket), by name, with its
/// bytes.
fn snapshot(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

fn is_root() -> bool {
    effective_uid() == 0
}

/// The effective uid, from /proc.
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

#[test]
fn damaged_truncated_and_future_stores_are_refused_untouched() {
    let base = tempdir("damaged");
    let store = base.join("store");
    make_store(&store, &[]);
    let dat = store.join("vkey-store.dat");
    let good = std::fs::read(&dat).unwrap();
    assert!(good.len() > 400, "{}", good.len());
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a flipped byte in the first record",
            Box::new(|b: &mut Vec<u8>| b[200] ^= 0x10),
            "damaged store",
        ),
        (
            "a flipped byte in the header",
            Box::new(|b: &mut Vec<u8>| b[60] ^= 0x10),
            "damaged store",
        ),
        (
            "cut inside the header",
            Box::new(|b: &mut Vec<u8>| b.truncate(100)),
            "damaged store",
        ),
        (
            "empty",
            Box::new(|b: &mut Vec<u8>| b.clear()),
            "not a vkey store file",
        ),
        (
            "a future format",
            Box::new(|b: &mut Vec<u8>| b[8..12].copy_from_slice(&4u32.to_be_bytes())),
            "store format 4 is from a newer vkey",
        ),
    ];
    for (what, damage, needle) in cases {
        std::fs::write(&dat, &good).unwrap();
        edit(&dat, damage);
        let before = snapshot(&store);
        refuses(&store, &[], needle);
        assert_eq!(snapshot(&store), before, "{what}: files changed");
    }
    // Undamaged again, it opens.
    std::fs::write(&dat, &good).unwrap();
    make_store(&store, &[]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn wrong_or_missing_passphrase_and_missing_files_are_refused_untouched() {
    let base = tempdir("keys");
    let store = base.join("store");
    make_store(&store, &[("VKEY_PASSPHRASE", "right one")]);
    assert!(!store.join("vkey-store.key").exists());
    let before = snapshot(&store);
    refuses(
        &store,
        &[("VKEY_PASSPHRASE", "wrong one")],
        "wrong passphrase",
    );
    refuses(&store, &[], "protected by a passphrase");
    assert_eq!(snapshot(&store), before);
    make_store(&store, &[("VKEY_PASSPHRASE", "right one")]);

    let store = base.join("keyfile");
    make_store(&store, &[]);
    let key = std::fs::read(store.join("vkey-store.key")).unwrap();
    std::fs::remove_file(store.join("vkey-store.key")).unwrap();
    let before = snapshot(&store);
    refuses(&store, &[], "vkey-store.key is missing");
    assert_eq!(snapshot(&store), before);
    std::fs::write(store.join("vkey-store.key"), &key).unwrap();
    std::fs::set_permissions(
        store.join("vkey-store.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The store file lost, its key still there: not silently a new identity.
    std::fs::remove_file(store.join("vkey-store.dat")).unwrap();
    let before = snapshot(&store);
    refuses(&store, &[], "refusing to make a new key");
    assert_eq!(snapshot(&store), before);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_directory_others_may_write_is_refused() {
    let base = tempdir("perm");
    let store = base.join("store");
    make_store(&store, &[]);
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    refuses(&store, &[], "writable by everyone");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o770)).unwrap();
    refuses(&store, &[], "writable by its group");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    make_store(&store, &[]);
    std::fs::remove_dir_all(&base).unwrap();
}

/// A read-only file system (a tmpfs remounted read-only, as root) or, where this user
/// cannot mount, a store file and directory without write permission.
#[test]
fn a_read_only_store_is_refused_untouched() {
    let base = tempdir("ro");
    let mnt = base.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
    // Unmounted however the test ends.
    struct Unmount<'a>(&'a Path, bool);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if self.1 {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
    }
    let _guard = Unmount(&mnt, mounted);
    let store = mnt.join("store");
    make_store(&store, &[]);
    let before = snapshot(&store);
    if mounted {
        assert!(
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&mnt)
                .status()
                .unwrap()
                .success()
        );
        refuses(&store, &[], "Read-only file system");
        assert_eq!(snapshot(&store), before);
    } else if !is_root() {
        std::fs::set_permissions(
            store.join("vkey-store.dat"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        refuses(&store, &[], "Permission denied");
        assert_eq!(snapshot(&store), before);
    } else {
        eprintln!("root without mount: no read-only store to test here");
    }
    drop(_guard);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn pin_commands_take_the_passphrase() {
    let base = tempdir("pinpass");
    let store = base.join("store");
    make_store(&store, &[("VKEY_PASSPHRASE", "the passphrase")]);
    let pin_set = |env: &[(&str, &str)]| {
        Command::new(VKEY)
            .args(["pin", "set", "--store"])
            .arg(&store)
            .env("VKEY_PIN", "4321abcd")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = pin_set(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protected by a passphrase"));
    let pf = base.join("passphrase");
    std::fs::write(&pf, "the passphrase\n").unwrap();
    let out = Command::new(VKEY)
        .args(["pin", "set", "--store"])
        .arg(&store)
        .arg("--passphrase-file")
        .arg(&pf)
        .env("VKEY_PIN", "4321abcd")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The key starts with the PIN it now has.
    let out = Command::new(VKEY)
        .args(["pin", "change", "--store"])
        .arg(&store)
        .env("VKEY_PASSPHRASE", "the passphrase")
        .env("VKEY_PIN", "4321abcd")
        .env("VKEY_NEW_PIN", "9876wxyz")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&base).unwrap();
}
