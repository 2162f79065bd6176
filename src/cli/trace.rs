//! The decoded event stream at the command line: `vkey serve --trace FILE` (JSON
//! lines) and `vkey trace` (one readable line per event).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::control::json;
use crate::key::Key;

/// Writes every event of `keys` to `path` as JSON lines (the same JSON as the event
/// stream's `data`).
pub fn spawn_trace_file(path: &Path, keys: &[Arc<Key>]) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o
        .open(path)
        .with_context(|| format!("cannot open the trace file {}", path.display()))?;
    let file = Arc::new(Mutex::new(std::io::LineWriter::new(file)));
    for k in keys {
        let mut rx = k.shared().subscribe();
        let file = file.clone();
        tokio::spawn(async move {
            loop {
                let line = match rx.recv().await {
                    Ok(e) => json::event(&e).1.to_string(),
                    Err(RecvError::Lagged(n)) => {
                        serde_json::json!({ "type": "lagged", "missed": n }).to_string()
                    }
                    Err(RecvError::Closed) => return,
                };
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                if writeln!(f, "{line}").is_err() {
                    tracing::error!("cannot write the trace file; trace stopped");
                    return;
                }
            }
        });
    }
    Ok(())
}

/// One readable line for an event of the stream.
pub fn readable(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let ms = v.get("time").and_then(Value::as_u64).unwrap_or(0);
    let secs = ms / 1000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    );
    let compact = |k: &str| match v.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(x) => format!(" {x}"),
    };
    let what = match s("type") {
        "ctapRequest" => format!("→ {}{}", s("command"), compact("params")),
        "ctapResponse" => format!("← {} {}{}", s("command"), s("status"), compact("response")),
        t @ ("credentialAdded" | "credentialAsserted" | "credentialUpdated") => {
            let c = v.get("credential").cloned().unwrap_or(Value::Null);
            let f = |k: &str| c.get(k).map(|x| x.to_string()).unwrap_or_default();
            format!(
                "{t} rpId={} credentialId={} userName={} signCount={} resident={} BE={} BS={}",
                f("rpId"),
                f("credentialId"),
                f("userName"),
                f("signCount"),
                f("isResidentCredential"),
                f("backupEligibility"),
                f("backupState")
            )
        }
        "credentialDeleted" => format!("credentialDeleted credentialId={}", s("credentialId")),
        "presenceRequested" => format!(
            "presenceRequested #{} {} rpId={}{}",
            v.get("id").map(|x| x.to_string()).unwrap_or_default(),
            s("command"),
            v.get("rpId").map(|x| x.to_string()).unwrap_or_default(),
            if v.get("waits") == Some(&Value::Bool(true)) {
                " (waits for an answer)"
            } else {
                ""
            }
        ),
        "lagged" => format!(
            "lagged: {} events lost (this reader was too slow)",
            v.get("missed").map(|x| x.to_string()).unwrap_or_default()
        ),
        other => other.to_string(),
    };
    format!("{time} {} {what}", s("busId"))
}
