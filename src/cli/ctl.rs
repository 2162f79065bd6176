//! The CLI commands that drive a running vkey through its control socket: `vkey
//! status`, `cred`, `presence`, `uv`, `replug`, `reset`, `trace`, and the online half
//! of `vkey pin`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Value, json};

use crate::control::client::Client;

/// Which vkey and which of its keys.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The control socket [default: $XDG_RUNTIME_DIR/vkey/control.sock, else the
    /// default store's control.sock, else /tmp/vkey-UID/control.sock].
    #[arg(long, value_name = "PATH", env = "VKEY_CONTROL")]
    pub control: Option<PathBuf>,
    /// The key's bus id, when several keys run.
    #[arg(long, value_name = "BUSID")]
    pub key: Option<String>,
}

impl Target {
    pub fn socket(&self) -> PathBuf {
        self.control
            .clone()
            .unwrap_or_else(|| crate::control::find_socket(super::serve::default_store_dir().ok()))
    }
}

#[derive(Subcommand, Debug)]
pub enum CredCommand {
    /// List the stored credentials (discoverable ones and imported ones).
    List(Target),
    /// Show one credential (without its private key); --rp-id opens a non-discoverable ID.
    Show {
        /// The credential ID (base64url).
        id: String,
        #[arg(long, value_name = "RP")]
        rp_id: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Import a credential: a CDP Credential object as JSON, from FILE or standard input.
    Add {
        /// JSON file (default: standard input).
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a stored credential.
    Rm {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete every stored credential.
    Clear(Target),
    /// Print credentials as JSON with their private keys (PKCS#8, base64url): all
    /// stored ones, or one ID (--rp-id for a non-discoverable one).
    Export {
        id: Option<String>,
        #[arg(long, value_name = "RP")]
        rp_id: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub enum PresenceCommand {
    /// Grant every touch at once.
    Auto(Target),
    /// Refuse every touch (OPERATION_DENIED).
    Deny(Target),
    /// Let requests wait until `vkey presence approve` / `deny-pending`.
    Manual(Target),
    /// Approve the waiting request (only request ID, if given).
    Approve {
        id: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Deny the waiting request (only request ID, if given).
    DenyPending {
        id: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Show the request that waits for a touch.
    Pending(Target),
}

#[derive(Subcommand, Debug)]
pub enum UvCommand {
    /// Built-in UV succeeds from now on.
    Pass(Target),
    /// Built-in UV fails from now on (UV_INVALID, then UV_BLOCKED).
    Fail(Target),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The bus id to act on: --key, or the only key that runs.
async fn bus_id(c: &Client, t: &Target) -> anyhow::Result<String> {
    if let Some(k) = &t.key {
        return Ok(k.clone());
    }
    let keys = c.call(Method::GET, "/v1/keys", None).await?;
    let ids: Vec<String> = keys
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.get("busId").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("the running vkey has no key"),
        many => bail!("several keys run ({}): give --key BUSID", many.join(", ")),
    }
}

/// Runs `f` with a client and the key's route prefix (`/v1/keys/BUSID`).
fn with_key<T>(
    t: &Target,
    f: impl AsyncFnOnce(&Client, String) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let c = Client::new(&t.socket());
        let id = bus_id(&c, t).await?;
        f(&c, format!("/v1/keys/{id}")).await
    })
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn without_private_key(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("privateKey");
    }
    v
}

pub fn status(t: Target) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = Client::new(&t.socket());
        let keys = c.call(Method::GET, "/v1/keys", None).await?;
        for k in keys.as_array().into_iter().flatten() {
            if t.key
                .as_deref()
                .is_some_and(|b| Some(b) != k["busId"].as_str())
            {
                continue;
            }
            let pin = if k["pinSet"] == json!(true) {
                format!("set ({} retries)", k["pinRetries"])
            } else {
                "not set".into()
            };
            let uv = match k["isUserVerified"].as_bool() {
                Some(true) => "pass",
                Some(false) => "fail",
                None => "none",
            };
            println!(
                "{}: {}, presence {}, PIN {pin}, built-in UV {uv}, {} credentials stored",
                k["busId"].as_str().unwrap_or("?"),
                if k["attached"] == json!(true) {
                    "attached"
                } else {
                    "not attached"
                },
                k["presence"].as_str().unwrap_or("?"),
                k["credentials"],
            );
            if let Some(p) = k.get("pending").filter(|p| !p.is_null()) {
                println!(
                    "  waiting for a touch: request {} ({} for {})",
                    p["id"], p["command"], p["rpId"]
                );
            }
        }
        Ok(())
    })
}

pub fn cred(cmd: CredCommand) -> anyhow::Result<()> {
    match cmd {
        CredCommand::List(t) => with_key(&t, async |c, k| {
            let list = c
                .call(Method::GET, &format!("{k}/credentials"), None)
                .await?;
            for cr in list.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}  {}  signCount {}",
                    cr["credentialId"].as_str().unwrap_or(""),
                    cr["rpId"].as_str().unwrap_or(""),
                    cr["userName"].as_str().unwrap_or("-"),
                    if cr["isResidentCredential"] == json!(true) {
                        "resident"
                    } else {
                        "non-resident"
                    },
                    cr["signCount"]
                );
            }
            Ok(())
        }),
        CredCommand::Show { id, rp_id, target } => with_key(&target, async |c, k| {
            let q = rp_id
                .map(|r| format!("?rpId={}", encode_query(&r)))
                .unwrap_or_default();
            let v = c
                .call(Method::GET, &format!("{k}/credentials/{id}{q}"), None)
                .await?;
            print_json(&without_private_key(v));
            Ok(())
        }),
        CredCommand::Add { file, target } => {
            let mut text = String::new();
            match &file {
                Some(f) => {
                    text = std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read {}", f.display()))?
                }
                None => {
                    std::io::stdin().read_to_string(&mut text)?;
                }
            }
            let body: Value = serde_json::from_str(&text).context("the credential is not JSON")?;
            with_key(&target, async |c, k| {
                let v = c
                    .call(Method::POST, &format!("{k}/credentials"), Some(&body))
                    .await?;
                println!("added {}", v["credentialId"].as_str().unwrap_or(""));
                Ok(())
            })
        }
        CredCommand::Rm { id, target } => with_key(&target, async |c, k| {
            c.call(Method::DELETE, &format!("{k}/credentials/{id}"), None)
                .await?;
            println!("deleted {id}");
            Ok(())
        }),
        CredCommand::Clear(t) => with_key(&t, async |c, k| {
            let v = c
                .call(Method::DELETE, &format!("{k}/credentials"), None)
                .await?;
            println!("deleted {} credentials", v["deleted"]);
            Ok(())
        }),
        CredCommand::Export { id, rp_id, target } => with_key(&target, async |c, k| {
            let v = match id {
                Some(id) => {
                    let q = rp_id
                        .map(|r| format!("?rpId={}", encode_query(&r)))
                        .unwrap_or_default();
                    c.call(Method::GET, &format!("{k}/credentials/{id}{q}"), None)
                        .await?
                }
                None => {
                    c.call(Method::GET, &format!("{k}/credentials"), None)
                        .await?
                }
            };
            print_json(&v);
            Ok(())
        }),
    }
}

/// Percent-encodes a query value (RP IDs are host names; be safe anyway).
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn presence(cmd: PresenceCommand) -> anyhow::Result<()> {
    let mode = |t: Target, m: &'static str| {
        with_key(&t, async move |c, k| {
            c.call(
                Method::POST,
                &format!("{k}/presence"),
                Some(&json!({ "mode": m })),
            )
            .await?;
            println!("presence: {m}");
            Ok(())
        })
    };
    let answer = |t: Target, id: Option<u64>, route: &'static str| {
        with_key(&t, async move |c, k| {
            let body = match id {
                Some(id) => json!({ "id": id }),
                None => json!({}),
            };
            let v = c
                .call(Method::POST, &format!("{k}/presence/{route}"), Some(&body))
                .await?;
            println!(
                "request {} {}",
                v["id"],
                if route == "approve" {
                    "approved"
                } else {
                    "denied"
                }
            );
            Ok(())
        })
    };
    match cmd {
        PresenceCommand::Auto(t) => mode(t, "auto"),
        PresenceCommand::Deny(t) => mode(t, "deny"),
        PresenceCommand::Manual(t) => mode(t, "manual"),
        PresenceCommand::Approve { id, target } => answer(target, id, "approve"),
        PresenceCommand::DenyPending { id, target } => answer(target, id, "deny"),
        PresenceCommand::Pending(t) => with_key(&t, async |c, k| {
            let v = c
                .call(Method::GET, &format!("{k}/presence/pending"), None)
                .await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no request waits for a touch");
            }
            for p in list {
                println!("request {}: {} for {}", p["id"], p["command"], p["rpId"]);
            }
            Ok(())
        }),
    }
}

pub fn uv(cmd: UvCommand) -> anyhow::Result<()> {
    let (t, pass) = match cmd {
        UvCommand::Pass(t) => (t, true),
        UvCommand::Fail(t) => (t, false),
    };
    with_key(&t, async |c, k| {
        c.call(
            Method::POST,
            &format!("{k}/user-verified"),
            Some(&json!({ "isUserVerified": pass })),
        )
        .await?;
        println!("built-in UV: {}", if pass { "pass" } else { "fail" });
        Ok(())
    })
}

pub fn replug(t: Target) -> anyhow::Result<()> {
    with_key(&t, async |c, k| {
        let v = c.call(Method::POST, &format!("{k}/replug"), None).await?;
        println!(
            "replugged{}",
            if v["wasAttached"] == json!(true) {
                " (the host's connection was dropped)"
            } else {
                " (no host was attached: powered up)"
            }
        );
        Ok(())
    })
}

pub fn reset(t: Target) -> anyhow::Result<()> {
    with_key(&t, async |c, k| {
        c.call(Method::POST, &format!("{k}/reset"), None).await?;
        println!("reset: credentials and PIN erased");
        Ok(())
    })
}

pub fn trace(t: Target, json_lines: bool) -> anyhow::Result<()> {
    with_key(&t, async |c, k| {
        c.follow(&format!("{k}/events"), |_event, data| {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            let line = if json_lines {
                data.to_string()
            } else {
                super::trace::readable(&v)
            };
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`vkey trace | head`) ends the command.
            writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
        })
        .await
    })
}

/// `vkey pin set|change` while the key runs: through the control socket.
pub fn pin_online(
    t: &Target,
    change: bool,
    pin: &[u8],
    current: Option<&[u8]>,
) -> anyhow::Result<()> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).context("the PIN is not UTF-8");
    let mut body = json!({ "pin": text(pin)? });
    if let Some(cur) = current {
        body["currentPin"] = json!(text(cur)?);
    }
    with_key(t, async |c, k| {
        let keys = c.call(Method::GET, &k, None).await?;
        let set = keys["pinSet"] == json!(true);
        if !change && set {
            bail!("the key already has a PIN; use `vkey pin change`");
        }
        if change && !set {
            bail!("the key has no PIN yet; use `vkey pin set`");
        }
        c.call(Method::POST, &format!("{k}/pin"), Some(&body))
            .await?;
        println!(
            "PIN {} for key {}",
            if change { "changed" } else { "set" },
            k.trim_start_matches("/v1/keys/")
        );
        Ok(())
    })
}
