//! The PIN at the edge: `vkey serve --pin-file FILE` / `VKEY_PIN` (user verification set
//! up before the first credential), and `vkey pin set|change --store DIR` offline.
//! A PIN is never taken as a command-line value: `ps` would show it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use crate::pin::policy::{self, PinError};
use crate::store::{OpenOptions, Store};

/// Reads a PIN from a file: its first line, without the line ending.
pub fn read_pin_file(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the PIN file {}", path.display()))?,
    );
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Zeroizing::new(line.to_vec()))
}

/// The PIN from `--pin-file` or the environment variable `var`, if either is given.
pub fn pin_from(file: Option<&Path>, var: &str) -> anyhow::Result<Option<Zeroizing<Vec<u8>>>> {
    let env = std::env::var_os(var).map(|v| Zeroizing::new(v.into_encoded_bytes()));
    match (file, env) {
        (Some(_), Some(_)) => bail!("the PIN is given twice (a PIN file and {var}); give one"),
        (Some(f), None) => Ok(Some(read_pin_file(f)?)),
        (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

/// The store passphrase from `--passphrase-file` or `VKEY_PASSPHRASE`, if either is
/// given: the file's first line, or the variable's value.
pub fn passphrase_from(file: Option<&Path>) -> anyhow::Result<Option<Zeroizing<Vec<u8>>>> {
    let env = std::env::var_os("VKEY_PASSPHRASE").map(|v| Zeroizing::new(v.into_encoded_bytes()));
    let p = match (file, env) {
        (Some(_), Some(_)) => {
            bail!("the passphrase is given twice (--passphrase-file and VKEY_PASSPHRASE); give one")
        }
        (Some(f), None) => Some(
            read_pin_file(f)
                .with_context(|| format!("cannot read the passphrase file {}", f.display()))?,
        ),
        (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    if p.as_ref().is_some_and(|p| p.is_empty()) {
        bail!("the passphrase is empty");
    }
    Ok(p)
}

/// Opens the store in `dir` with the passphrase given (if any) and `max_credentials`.
pub fn open_store(
    dir: &Path,
    passphrase_file: Option<&Path>,
    max_credentials: usize,
) -> anyhow::Result<Store> {
    let opts = OpenOptions {
        passphrase: passphrase_from(passphrase_file)?,
        max_credentials,
        ..OpenOptions::default()
    };
    Store::open(dir, &opts).with_context(|| format!("cannot open the store in {}", dir.display()))
}

fn check_policy(store: &Store, pin: &[u8]) -> anyhow::Result<u8> {
    let min = store.pin_status().min_pin_length;
    match policy::check_pin(pin, min) {
        Ok(n) => Ok(n),
        Err(PinError::Policy | PinError::BadPadding) => bail!(
            "the PIN does not meet the policy: {min} to 63 bytes of UTF-8 with at least {min} characters, no NUL"
        ),
    }
}

/// Sets the PIN if the store has none; accepts the same PIN; refuses a different one.
/// Returns whether it set the PIN now.
pub fn apply_startup_pin(store: &mut Store, pin: &[u8]) -> anyhow::Result<bool> {
    if !store.pin_status().is_set {
        let code_points = check_policy(store, pin)?;
        store
            .set_pin(&policy::pin_hash(pin), code_points)
            .context("cannot save the PIN")?;
        return Ok(true);
    }
    // Comparing a local administrator's PIN does not spend a retry: nothing is guessed.
    if store.pin_hash_matches(&policy::pin_hash(pin)) {
        return Ok(false);
    }
    bail!(
        "the store already has a different PIN; use `vkey pin change --store DIR`, or reset the key, to change it"
    )
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Set the PIN: of the running key (through its control socket), or with --store of
    /// a store whose key is not running.
    Set(PinArgs),
    /// Change the PIN: of the running key, or with --store offline.
    Change(PinArgs),
}

#[derive(Args, Debug)]
pub struct PinArgs {
    /// The key's store, offline [default: the running key if its control socket
    /// answers, else the user's data directory].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["control", "key"])]
    store: Option<PathBuf>,
    /// The running key's control socket (default: as `vkey status` finds it).
    #[arg(long, value_name = "PATH", env = "VKEY_CONTROL")]
    control: Option<PathBuf>,
    /// The running key's bus id, when several run.
    #[arg(long, value_name = "BUSID")]
    key: Option<String>,
    /// File whose first line is the PIN (for `change`: the current PIN). Else VKEY_PIN,
    /// else the first line of standard input.
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// `change`: file with the new PIN. Else VKEY_NEW_PIN, else the next line of standard input.
    #[arg(long, value_name = "FILE")]
    new_pin_file: Option<PathBuf>,
    /// The store's passphrase, if it has one: FILE's first line. VKEY_PASSPHRASE works too.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

fn stdin_line(what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(String::new());
    if std::io::stdin().read_line(&mut line)? == 0 {
        bail!("no {what} given (use --pin-file, the environment or standard input)");
    }
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
    ))
}

pub fn run(
    cmd: PinCommand,
    default_store: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<()> {
    let (PinCommand::Set(args) | PinCommand::Change(args)) = &cmd;
    if args.store.is_none() {
        let target = super::ctl::Target {
            control: args.control.clone(),
            key: args.key.clone(),
        };
        let socket = target.socket();
        let reachable = std::os::unix::net::UnixStream::connect(&socket).is_ok();
        if reachable || args.control.is_some() || args.key.is_some() {
            let change = matches!(cmd, PinCommand::Change(_));
            let first = match pin_from(args.pin_file.as_deref(), "VKEY_PIN")? {
                Some(p) => p,
                None => stdin_line(if change { "current PIN" } else { "PIN" })?,
            };
            if !change {
                return super::ctl::pin_online(&target, false, &first, None);
            }
            let new = match pin_from(args.new_pin_file.as_deref(), "VKEY_NEW_PIN")? {
                Some(p) => p,
                None => stdin_line("new PIN")?,
            };
            return super::ctl::pin_online(&target, true, &new, Some(&first));
        }
    }
    let dir = match &args.store {
        Some(d) => d.clone(),
        None => default_store()?,
    };
    let mut store = open_store(
        &dir,
        args.passphrase_file.as_deref(),
        crate::store::DEFAULT_MAX_CREDENTIALS,
    )?;
    match cmd {
        PinCommand::Set(args) => {
            if store.pin_status().is_set {
                bail!("the store already has a PIN; use `vkey pin change`");
            }
            let pin = match pin_from(args.pin_file.as_deref(), "VKEY_PIN")? {
                Some(p) => p,
                None => stdin_line("PIN")?,
            };
            apply_startup_pin(&mut store, &pin)?;
            println!("PIN set for the key in {}", dir.display());
        }
        PinCommand::Change(args) => {
            if !store.pin_status().is_set {
                bail!("the store has no PIN yet; use `vkey pin set`");
            }
            if store.pin_status().retries == 0 {
                bail!("the PIN is blocked (no retries left); only a reset of the key clears it");
            }
            let current = match pin_from(args.pin_file.as_deref(), "VKEY_PIN")? {
                Some(p) => p,
                None => stdin_line("current PIN")?,
            };
            let new = match pin_from(args.new_pin_file.as_deref(), "VKEY_NEW_PIN")? {
                Some(p) => p,
                None => stdin_line("new PIN")?,
            };
            let code_points = check_policy(&store, &new)?;
            // Like changePIN over CTAP: the retry counter goes down before the comparison.
            let left = store
                .record_pin_attempt()
                .context("cannot save the PIN state")?;
            if !store.pin_hash_matches(&policy::pin_hash(&current)) {
                bail!("wrong PIN ({left} retries left)");
            }
            store
                .set_pin(&policy::pin_hash(&new), code_points)
                .context("cannot save the PIN")?;
            println!("PIN changed for the key in {}", dir.display());
        }
    }
    Ok(())
}
