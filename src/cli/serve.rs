//! `vkey serve`: run the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::ctap::{AttestationFormat, Authenticator, BuiltInUv, Config, Presence, PresenceMode};
use crate::key::Key;
use crate::store::Store;
use crate::usbip::{ExportedDevice, Server};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port of the USB/IP server. Loopback by default: USB/IP has no
    /// authentication, anyone who can connect can use the key.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:3240")]
    listen: SocketAddr,

    /// Allow --listen on a non-loopback address (prints a warning).
    #[arg(long)]
    allow_remote: bool,

    /// USB/IP bus id under which the key is exported (what `usbip attach -b` takes).
    #[arg(long, value_name = "ID", default_value = "1-1", value_parser = parse_busid)]
    busid: String,

    /// Directory of the key's persistent store [default: the user's data directory,
    /// e.g. ~/.local/share/vkey].
    #[arg(long, value_name = "DIR", conflicts_with = "ephemeral")]
    store: Option<PathBuf>,

    /// Keep everything in memory: the key is new on every start and gone on exit.
    #[arg(long)]
    ephemeral: bool,

    /// User presence: auto (granted at once), deny (OPERATION_DENIED), prompt (ask on
    /// this terminal: y/n), delay:MS (granted after MS milliseconds).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    presence: PresenceMode,

    /// Attestation of new credentials: packed (x5c batch certificate from the store's
    /// attestation CA), self (packed self attestation) or none.
    #[arg(long, value_name = "FORMAT", default_value = "packed", value_parser = parse_attestation)]
    attestation: AttestationFormat,

    /// Set the backup-eligible flag (BE) in authenticator data.
    #[arg(long)]
    backup_eligible: bool,

    /// Set the backed-up flag (BS) in authenticator data (needs --backup-eligible).
    #[arg(long, requires = "backup_eligible")]
    backup_state: bool,

    /// Set up user verification before any credential exists: the PIN in FILE's first
    /// line is set if the store has none, and must match if it has one. VKEY_PIN works
    /// too. (Never a command-line value: `ps` would show it.)
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,

    /// Built-in user verification (like a fingerprint reader): advertises "uv" and serves
    /// getPinUvAuthTokenUsingUvWithPermissions.
    #[arg(long)]
    uv: bool,

    /// The result of built-in UV: pass (verified) or fail.
    #[arg(long, value_name = "RESULT", default_value = "pass", requires = "uv", value_parser = ["pass", "fail"])]
    uv_result: String,

    /// Set the built-in UV retries left (1-8) at start.
    #[arg(long, value_name = "N", requires = "uv", value_parser = clap::value_parser!(u8).range(1..=8))]
    uv_retries: Option<u8>,
}

fn parse_attestation(s: &str) -> Result<AttestationFormat, String> {
    match s {
        "packed" => Ok(AttestationFormat::Packed),
        "self" => Ok(AttestationFormat::SelfAttestation),
        "none" => Ok(AttestationFormat::None),
        _ => Err("expected packed, self or none".into()),
    }
}

/// `--presence prompt`: answers typed on the terminal go to the waiting request.
fn spawn_prompt_reader(presence: Presence) {
    let _ = std::thread::Builder::new()
        .name("vkey-prompt".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let yes = matches!(line.trim(), "y" | "Y" | "yes");
                if !presence.answer(yes) {
                    eprintln!("vkey: no request is waiting for a touch");
                }
            }
        });
}

fn parse_busid(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 31
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c))
    {
        return Err("a bus id is 1-31 characters of [0-9A-Za-z.:_-], e.g. 1-1".into());
    }
    Ok(s.to_string())
}

pub(super) fn default_store_dir() -> anyhow::Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "vkey").context(
        "cannot find the user's data directory (no HOME?); give --store DIR or --ephemeral",
    )?;
    Ok(dirs.data_dir().to_path_buf())
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            bail!(
                "--listen {} is not a loopback address; USB/IP has no authentication, so anyone who can reach it can use the key. Add --allow-remote if you mean it",
                args.listen
            );
        }
        eprintln!(
            "vkey: WARNING: serving USB/IP on {} — USB/IP has NO authentication: anyone who can reach this address can attach and use this key",
            args.listen
        );
    }
    // Before anything opens files: connections are capped well below the limit, with a
    // reserve kept for the store's writes (see usbip::server).
    crate::usbip::server::raise_nofile_limit();
    let store = if args.ephemeral {
        Store::ephemeral()
    } else {
        let dir = match args.store {
            Some(d) => d,
            None => default_store_dir()?,
        };
        Store::open(&dir).with_context(|| format!("cannot open the store in {}", dir.display()))?
    };
    let pin = super::pin::pin_from(args.pin_file.as_deref(), "VKEY_PIN")?;
    let mut store = store;
    let pin_note = match &pin {
        Some(pin) => {
            if super::pin::apply_startup_pin(&mut store, pin)? {
                "PIN set now"
            } else {
                "PIN matches the store's"
            }
        }
        None if store.pin().hash.is_some() => "PIN set",
        None => "no PIN",
    };
    drop(pin);
    if let Some(n) = args.uv_retries {
        store
            .update_pin(|p| p.uv_retries = n)
            .context("cannot save the UV retries")?;
    }
    let store_desc = match store.dir() {
        Some(d) => d.display().to_string(),
        None => "in memory (--ephemeral)".to_string(),
    };
    let serial = store.serial().to_string();
    let uv_note = if args.uv {
        format!(", built-in UV ({})", args.uv_result)
    } else {
        String::new()
    };
    let presence = Presence::new(args.presence);
    if args.presence == PresenceMode::Prompt {
        spawn_prompt_reader(presence.clone());
    }
    let config = Config {
        presence,
        attestation: args.attestation,
        backup_eligible: args.backup_eligible,
        backup_state: args.backup_state,
        uv: args.uv.then(|| BuiltInUv::new(args.uv_result == "pass")),
    };
    let auth = Authenticator::new(store, config).context("cannot initialise the authenticator")?;
    let key: Arc<dyn ExportedDevice> =
        Arc::new(Key::new(auth).context("cannot start the authenticator")?);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let server = Server::bind(args.listen, vec![(args.busid.clone(), key)])
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = server.local_addr()?;
        let port = if addr.port() == 3240 {
            String::new()
        } else {
            format!("--tcp-port {} ", addr.port())
        };
        println!(
            "vkey {}: FIDO2 key, serial {serial}, store {store_desc}, {pin_note}{uv_note}",
            env!("CARGO_PKG_VERSION")
        );
        println!("listening on {addr} (USB/IP), bus id {}", args.busid);
        println!(
            "attach with: sudo modprobe vhci-hcd && sudo usbip {port}attach -r {} -b {}",
            addr.ip(),
            args.busid
        );
        tokio::select! {
            _ = server.run() => {}
            _ = tokio::signal::ctrl_c() => eprintln!("vkey: interrupted, exiting"),
        }
        Ok(())
    })
}
