//! The control interface: HTTP/1.1 + JSON over a Unix socket (mode 0600 in a 0700
//! directory), with the powers of Chrome DevTools' virtual authenticator (credentials,
//! user verification, presence, response override bits), plus PIN, reset, replug and
//! the decoded event stream. `server` serves it (axum); `client` is what the CLI
//! speaks it with (hyper). An edge module: it may import every layer.

pub mod client;
pub mod json;
pub mod server;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The socket's file name in its directory.
pub const SOCKET_NAME: &str = "control.sock";

/// `$XDG_RUNTIME_DIR/vkey`, if the variable is set.
fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("vkey"))
}

/// The per-user directory under /tmp used when there is neither XDG_RUNTIME_DIR nor a
/// store directory (an ephemeral key).
fn tmp_dir() -> PathBuf {
    let uid = crate::usbip::peer::own_uid().map_or_else(|| "user".into(), |u| u.to_string());
    std::env::temp_dir().join(format!("vkey-{uid}"))
}

/// Where `vkey serve` puts its socket without `--control`:
/// `$XDG_RUNTIME_DIR/vkey/control.sock`, else beside the store, else a per-user
/// directory under /tmp.
pub fn default_socket(store_dir: Option<&Path>) -> PathBuf {
    runtime_dir()
        .or_else(|| store_dir.map(Path::to_path_buf))
        .unwrap_or_else(tmp_dir)
        .join(SOCKET_NAME)
}

/// Where the CLI looks without `--control` / `VKEY_CONTROL`: the first of the places
/// `vkey serve` would use that holds a socket.
pub fn find_socket(default_store: Option<PathBuf>) -> PathBuf {
    let candidates: Vec<PathBuf> = [runtime_dir(), default_store, Some(tmp_dir())]
        .into_iter()
        .flatten()
        .map(|d| d.join(SOCKET_NAME))
        .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .or_else(|| candidates.first().cloned())
        .unwrap_or_else(|| tmp_dir().join(SOCKET_NAME))
}

/// Creates `dir` with mode 0700 if missing; an existing one must be ours and not open
/// to others (a directory under /tmp could have been made by someone else first).
fn private_dir(dir: &Path, check_mode: bool) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let m = std::fs::symlink_metadata(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        if check_mode {
            let own = crate::usbip::peer::own_uid();
            if !m.is_dir() || Some(m.uid()) != own || m.mode() & 0o077 != 0 {
                bail!(
                    "{} must be a directory of ours with mode 0700 (it is not): remove it or give --control PATH",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether a live process answers on the socket at `path`.
fn live(path: &Path) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Binds the control socket at `path` (mode 0600). A stale socket (its process is
/// gone) is replaced; a live one is never taken over. For the default path a live
/// socket makes us fall back to `control-PID.sock` beside it (another vkey runs);
/// for a path given with `--control` it is an error.
///
/// Several vkey processes may start at the same instant on the same default path
/// (a test suite does): look, remove a stale socket and bind under one lock file in
/// the socket's directory, so that no starter removes the socket another has just
/// bound.
pub fn bind(path: &Path, is_default: bool) -> anyhow::Result<(tokio::net::UnixListener, PathBuf)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir, is_default)?;
    let _lock = lock_dir(dir)?;
    let mut path = path.to_path_buf();
    if path.exists() && live(&path) {
        if !is_default {
            bail!(
                "the control socket {} is in use by another vkey process",
                path.display()
            );
        }
        let other = dir.join(format!("control-{}.sock", std::process::id()));
        eprintln!(
            "vkey: another vkey serves {}; this one uses {} (give --control PATH to choose)",
            path.display(),
            other.display()
        );
        remove_stale_fallbacks(dir);
        path = other;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()));
        }
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok((listener, path))
}

/// Holds `control.lock` in `dir` exclusively until dropped.
fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let p = dir.join("control.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", p.display()))?;
    Ok(f)
}

/// Removes `control-PID.sock` files that no process answers any more (left by a
/// vkey that was killed), so that fallbacks do not pile up.
fn remove_stale_fallbacks(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("control-") && name.ends_with(".sock") && !live(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the socket file when the server stops.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
