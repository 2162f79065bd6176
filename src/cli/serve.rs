//! `vkey serve`: run one key or several, with the control interface.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::control::{self, server::ControlState};
use crate::ctap::{
    AttestationFormat, Authenticator, BuiltInUv, Config, Presence, PresenceMode, ResponseOverrides,
};
use crate::key::{Key, KeyShared};
use crate::store::Store;
use crate::usbip::{ExportedDevice, PeerPolicy, Server};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port of the USB/IP server. Loopback by default: USB/IP has no
    /// authentication, anyone who can connect can use the key.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:3240")]
    listen: SocketAddr,

    /// Allow --listen on a non-loopback address (prints a warning).
    #[arg(long)]
    allow_remote: bool,

    /// Accept USB/IP peers of any local user. By default only root (the kernel's
    /// `usbip attach`) and the user vkey runs as may import the keys.
    #[arg(long)]
    allow_any_user: bool,

    /// USB/IP bus id under which the key is exported (what `usbip attach -b` takes).
    #[arg(long, value_name = "ID", default_value = "1-1", value_parser = parse_busid)]
    busid: String,

    /// Serve N keys: bus ids 1-1 … 1-N, stores DIR/1-1 … (all in memory with
    /// --ephemeral), distinct serials.
    #[arg(long, value_name = "N", conflicts_with = "busid", value_parser = clap::value_parser!(u8).range(1..=32))]
    keys: Option<u8>,

    /// Serve the keys described in a TOML file: one [[key]] table each, with busid,
    /// store or ephemeral, presence, pin-file, uv, uv-result, attestation,
    /// backup-eligible, backup-state, u2f.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keys", "busid", "store", "ephemeral", "passphrase_file", "pin_file", "uv", "uv_result", "uv_retries", "attestation", "backup_eligible", "backup_state", "presence", "no_u2f"])]
    config: Option<PathBuf>,

    /// Directory of the key's persistent store [default: the user's data directory,
    /// e.g. ~/.local/share/vkey].
    #[arg(long, value_name = "DIR", conflicts_with = "ephemeral")]
    store: Option<PathBuf>,

    /// Keep everything in memory: the key is new on every start and gone on exit.
    #[arg(long)]
    ephemeral: bool,

    /// Encrypt the store with a key derived from the passphrase in FILE's first line
    /// (Argon2id); without one, a random key in vkey-store.key beside the store does.
    /// VKEY_PASSPHRASE works too. A store made with a passphrase needs it at every start.
    #[arg(long, value_name = "FILE", conflicts_with = "ephemeral")]
    passphrase_file: Option<PathBuf>,

    /// The most credentials the key stores (getInfo remainingDiscoverableCredentials
    /// counts down from it; then KEY_STORE_FULL).
    #[arg(long, value_name = "N", default_value_t = crate::store::DEFAULT_MAX_CREDENTIALS,
          value_parser = parse_max_credentials)]
    max_credentials: usize,

    /// User presence: auto (granted at once), deny (OPERATION_DENIED), manual (wait for
    /// the control interface: vkey presence approve), prompt (ask on this terminal:
    /// y N / n N), delay:MS (granted after MS milliseconds). Switchable at run time.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    presence: PresenceMode,

    /// Attestation of new credentials: packed (x5c batch certificate from the store's
    /// attestation CA), self (packed self attestation) or none.
    #[arg(long, value_name = "FORMAT", default_value = "packed", value_parser = parse_attestation)]
    attestation: AttestationFormat,

    /// Set the backup-eligible flag (BE) in authenticator data (the default of each
    /// new credential).
    #[arg(long)]
    backup_eligible: bool,

    /// Set the backed-up flag (BS) in authenticator data (needs --backup-eligible).
    #[arg(long, requires = "backup_eligible")]
    backup_state: bool,

    /// No CTAP1/U2F: CTAPHID INIT says NMSG, CTAPHID_MSG is answered INVALID_CMD and
    /// getInfo leaves out U2F_V2.
    #[arg(long)]
    no_u2f: bool,

    /// Set up user verification before any credential exists: the PIN in FILE's first
    /// line is set if the store has none, and must match if it has one. VKEY_PIN works
    /// too. (Never a command-line value: `ps` would show it.)
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,

    /// Built-in user verification (like a fingerprint reader): advertises "uv" and serves
    /// getPinUvAuthTokenUsingUvWithPermissions.
    #[arg(long)]
    uv: bool,

    /// The result of built-in UV: pass (verified) or fail. Switchable at run time
    /// (vkey uv pass|fail).
    #[arg(long, value_name = "RESULT", default_value = "pass", requires = "uv", value_parser = ["pass", "fail"])]
    uv_result: String,

    /// Set the built-in UV retries left (1-8) at start.
    #[arg(long, value_name = "N", requires = "uv", value_parser = clap::value_parser!(u8).range(1..=8))]
    uv_retries: Option<u8>,

    /// The control socket [default: $XDG_RUNTIME_DIR/vkey/control.sock, else
    /// control.sock in the store directory, else /tmp/vkey-UID/control.sock].
    #[arg(long, value_name = "PATH", env = "VKEY_CONTROL")]
    control: Option<PathBuf>,

    /// Write every event (decoded CTAP requests and responses, secrets redacted;
    /// credential and presence events; attach/detach) to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    /// Attach each key on this Linux machine through vhci-hcd (needs root and the
    /// vhci-hcd module), print its /dev/hidraw node, re-attach after a replug, detach
    /// on exit.
    #[arg(long)]
    attach: bool,
}

fn parse_attestation(s: &str) -> Result<AttestationFormat, String> {
    match s {
        "packed" => Ok(AttestationFormat::Packed),
        "self" => Ok(AttestationFormat::SelfAttestation),
        "none" => Ok(AttestationFormat::None),
        _ => Err("expected packed, self or none".into()),
    }
}

/// `--presence prompt`: an answer names the request the user saw (`y 3`, `n 3`); a
/// stale or bare answer approves nothing.
fn spawn_prompt_reader(presences: Vec<Presence>) {
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
                let mut words = line.split_whitespace();
                let approve = match words.next() {
                    Some("y" | "Y" | "yes") => true,
                    Some("n" | "N" | "no") => false,
                    _ => {
                        eprintln!("vkey: answer \"y N\" or \"n N\" (N: the request's number)");
                        continue;
                    }
                };
                let Some(id) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
                    eprintln!(
                        "vkey: say which request: \"y N\" or \"n N\" (N: the number in the prompt)"
                    );
                    continue;
                };
                let answered = presences
                    .iter()
                    .any(|p| p.answer(Some(id), approve).is_ok());
                if !answered {
                    eprintln!(
                        "vkey: request {id} does not wait for a touch (any more): not answered"
                    );
                }
            }
        });
}

fn parse_max_credentials(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=crate::store::MAX_MAX_CREDENTIALS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {}",
            crate::store::MAX_MAX_CREDENTIALS
        )),
    }
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

/// One key to serve.
struct KeySpec {
    busid: String,
    /// `None`: in memory.
    store: Option<PathBuf>,
    /// The store's passphrase file (else VKEY_PASSPHRASE, else the key file).
    passphrase_file: Option<PathBuf>,
    max_credentials: usize,
    presence: PresenceMode,
    pin_file: Option<PathBuf>,
    /// Built-in UV and its result.
    uv: Option<bool>,
    uv_retries: Option<u8>,
    attestation: AttestationFormat,
    backup_eligible: bool,
    backup_state: bool,
    /// CTAP1/U2F on.
    u2f: bool,
}

/// `--config FILE`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    key: Vec<KeyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KeyConfig {
    busid: String,
    store: Option<PathBuf>,
    #[serde(default)]
    ephemeral: bool,
    passphrase_file: Option<PathBuf>,
    max_credentials: Option<usize>,
    presence: Option<String>,
    pin_file: Option<PathBuf>,
    #[serde(default)]
    uv: bool,
    uv_result: Option<String>,
    attestation: Option<String>,
    #[serde(default)]
    backup_eligible: bool,
    #[serde(default)]
    backup_state: bool,
    /// CTAP1/U2F (`u2f = false`: like `--no-u2f`).
    #[serde(default = "yes")]
    u2f: bool,
}

fn yes() -> bool {
    true
}

fn read_config(path: &Path) -> anyhow::Result<Vec<KeySpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(1);
        anyhow::anyhow!(
            "{} line {line}: {}",
            path.display(),
            e.message().replace('\n', " ")
        )
    })?;
    if file.key.is_empty() {
        bail!("{}: no [[key]] table", path.display());
    }
    let mut specs = Vec::new();
    for (i, k) in file.key.into_iter().enumerate() {
        let at = |what: String| {
            anyhow::anyhow!("{} key {} ({}): {what}", path.display(), i + 1, k.busid)
        };
        parse_busid(&k.busid).map_err(&at)?;
        if specs.iter().any(|s: &KeySpec| s.busid == k.busid) {
            return Err(at("bus id used twice".into()));
        }
        if k.ephemeral && k.store.is_some() {
            return Err(at("store and ephemeral exclude each other".into()));
        }
        if k.backup_state && !k.backup_eligible {
            return Err(at("backup-state needs backup-eligible".into()));
        }
        if k.uv_result.is_some() && !k.uv {
            return Err(at("uv-result needs uv = true".into()));
        }
        let store = match (k.ephemeral, &k.store) {
            (true, _) => None,
            (false, Some(s)) => Some(s.clone()),
            (false, None) => Some(default_store_dir()?.join(&k.busid)),
        };
        let uv = match k.uv_result.as_deref() {
            None | Some("pass") => k.uv.then_some(true),
            Some("fail") => Some(false),
            Some(other) => return Err(at(format!("uv-result '{other}': expected pass or fail"))),
        };
        let max_credentials = match k.max_credentials {
            None => crate::store::DEFAULT_MAX_CREDENTIALS,
            Some(n) => parse_max_credentials(&n.to_string())
                .map_err(|e| at(format!("max-credentials: {e}")))?,
        };
        specs.push(KeySpec {
            busid: k.busid.clone(),
            store,
            passphrase_file: k.passphrase_file.clone(),
            max_credentials,
            presence: k
                .presence
                .as_deref()
                .unwrap_or("auto")
                .parse()
                .map_err(&at)?,
            pin_file: k.pin_file.clone(),
            uv,
            uv_retries: None,
            attestation: parse_attestation(k.attestation.as_deref().unwrap_or("packed"))
                .map_err(&at)?,
            backup_eligible: k.backup_eligible,
            backup_state: k.backup_state,
            u2f: k.u2f,
        });
    }
    Ok(specs)
}

fn specs_from_args(args: &ServeArgs) -> anyhow::Result<(Vec<KeySpec>, Option<PathBuf>)> {
    if let Some(path) = &args.config {
        return Ok((read_config(path)?, None));
    }
    let base = if args.ephemeral {
        None
    } else {
        Some(match &args.store {
            Some(d) => d.clone(),
            None => default_store_dir()?,
        })
    };
    let spec = |busid: String, store: Option<PathBuf>| KeySpec {
        busid,
        store,
        passphrase_file: args.passphrase_file.clone(),
        max_credentials: args.max_credentials,
        presence: args.presence,
        pin_file: args.pin_file.clone(),
        uv: args.uv.then(|| args.uv_result == "pass"),
        uv_retries: args.uv_retries,
        attestation: args.attestation,
        backup_eligible: args.backup_eligible,
        backup_state: args.backup_state,
        u2f: !args.no_u2f,
    };
    let specs = match args.keys {
        None => vec![spec(args.busid.clone(), base.clone())],
        Some(n) => (1..=n)
            .map(|i| {
                let busid = format!("1-{i}");
                let store = base.as_ref().map(|b| b.join(&busid));
                spec(busid, store)
            })
            .collect(),
    };
    Ok((specs, base))
}

/// A key ready to serve, and what its start-up line says.
struct Started {
    key: Arc<Key>,
    line: String,
}

fn start_key(spec: &KeySpec, several: bool) -> anyhow::Result<Started> {
    let mut store = match &spec.store {
        None => Store::ephemeral_with(spec.max_credentials),
        Some(dir) => {
            super::pin::open_store(dir, spec.passphrase_file.as_deref(), spec.max_credentials)?
        }
    };
    let pin = super::pin::pin_from(spec.pin_file.as_deref(), "VKEY_PIN")?;
    let pin_note = match &pin {
        Some(pin) => {
            if super::pin::apply_startup_pin(&mut store, pin)? {
                "PIN set now"
            } else {
                "PIN matches the store's"
            }
        }
        None if store.pin_status().is_set => "PIN set",
        None => "no PIN",
    };
    drop(pin);
    if let Some(n) = spec.uv_retries {
        store
            .set_uv_retries(n)
            .context("cannot save the UV retries")?;
    }
    let store_desc = match store.dir() {
        Some(d) => d.display().to_string(),
        None => "in memory (--ephemeral)".to_string(),
    };
    let serial = store.serial().to_string();
    let uv_note = match spec.uv {
        Some(pass) => format!(", built-in UV ({})", if pass { "pass" } else { "fail" }),
        None => String::new(),
    };
    let presence = Presence::new(spec.presence);
    let uv = spec.uv.map(BuiltInUv::new);
    let overrides = ResponseOverrides::default();
    let shared = KeyShared::new(&spec.busid, presence.clone(), uv.clone(), overrides.clone());
    let config = Config {
        presence,
        attestation: spec.attestation,
        backup_eligible: spec.backup_eligible,
        backup_state: spec.backup_state,
        uv,
        events: shared.event_sink(),
        overrides,
        u2f: spec.u2f,
        ..Config::default()
    };
    let auth = Authenticator::new(store, config).context("cannot initialise the authenticator")?;
    let key = Arc::new(Key::new(auth, shared).context("cannot start the authenticator")?);
    let name = if several {
        format!("FIDO2 key {}", spec.busid)
    } else {
        "FIDO2 key".to_string()
    };
    let u2f_note = if spec.u2f { "" } else { ", no U2F" };
    let line = format!(
        "vkey {}: {name}, serial {serial}, store {store_desc}, {pin_note}{uv_note}{u2f_note}",
        env!("CARGO_PKG_VERSION")
    );
    Ok(Started { key, line })
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
    if args.allow_any_user {
        eprintln!(
            "vkey: WARNING: --allow-any-user: every local user can import these keys (reset them, burn their PIN retries)"
        );
    }
    // Before anything opens files: connections are capped well below the limit, with a
    // reserve kept for the store's writes (see usbip::server).
    crate::usbip::server::raise_nofile_limit();
    if args.attach {
        super::attach::preflight()?;
    }
    let (specs, base_dir) = specs_from_args(&args)?;
    let several = specs.len() > 1;
    let mut keys = Vec::new();
    let mut lines = Vec::new();
    for spec in &specs {
        let s = start_key(spec, several)?;
        lines.push(s.line);
        keys.push(s.key);
    }
    let prompt: Vec<Presence> = keys
        .iter()
        .filter(|k| k.shared().presence.mode() == PresenceMode::Prompt)
        .map(|k| k.shared().presence.clone())
        .collect();
    if !prompt.is_empty() {
        spawn_prompt_reader(prompt);
    }
    // The control socket: beside the store when there is one store, or beside the
    // stores of --keys.
    let (socket, is_default) = match &args.control {
        Some(p) => (p.clone(), false),
        None => {
            let store_dir = match (&base_dir, specs.as_slice()) {
                (Some(b), _) if args.keys.is_some() => Some(b.clone()),
                (_, [one]) => one.store.clone(),
                _ => None,
            };
            (control::default_socket(store_dir.as_deref()), true)
        }
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let devices: Vec<(String, Arc<dyn ExportedDevice>)> = keys
            .iter()
            .map(|k| {
                (
                    k.shared().bus_id().to_string(),
                    k.clone() as Arc<dyn ExportedDevice>,
                )
            })
            .collect();
        let mut server = Server::bind(args.listen, devices)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        if args.allow_any_user {
            server.set_peer_policy(PeerPolicy::AnyUser);
        }
        let addr = server.local_addr()?;
        let (listener, socket) = control::bind(&socket, is_default)?;
        let _socket_guard = control::SocketGuard(socket.clone());
        let port = if addr.port() == 3240 {
            String::new()
        } else {
            format!("--tcp-port {} ", addr.port())
        };
        for l in &lines {
            println!("{l}");
        }
        let busids: Vec<&str> = keys.iter().map(|k| k.shared().bus_id()).collect();
        if several {
            println!(
                "listening on {addr} (USB/IP), bus ids {}",
                busids.join(", ")
            );
        } else {
            println!("listening on {addr} (USB/IP), bus id {}", busids.join(""));
        }
        for b in &busids {
            println!(
                "attach with: sudo modprobe vhci-hcd && sudo usbip {port}attach -r {} -b {b}",
                addr.ip()
            );
        }
        println!("control socket: {}", socket.display());
        if let Some(path) = &args.trace {
            super::trace::spawn_trace_file(path, &keys)?;
        }
        tokio::spawn(control::server::serve(
            listener,
            Arc::new(ControlState { keys: keys.clone() }),
        ));
        tokio::spawn(server.run());
        let attacher = if args.attach {
            Some(super::attach::Attacher::start(addr, &keys).await?)
        } else {
            None
        };
        wait_for_signal().await;
        if let Some(a) = attacher {
            a.detach_all().await;
        }
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("vkey: interrupted, exiting"),
            _ = term.recv() => eprintln!("vkey: terminated, exiting"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("vkey: interrupted, exiting");
    }
}
