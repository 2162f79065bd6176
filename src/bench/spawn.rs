//! `--spawn N`: local `vkey serve --ephemeral` processes on free ports, to measure vkey
//! (and N keys at once) without starting servers by hand. They are killed when the
//! guard drops.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use super::TargetSpec;

/// The spawned servers; killed and reaped on drop.
pub struct Spawned {
    children: Vec<Child>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `n` servers with `vkey serve --ephemeral --listen 127.0.0.1:0 EXTRA…` and
/// returns them with their targets (label `vkey-I`, pid known).
pub fn spawn_vkeys(n: usize, extra: &[String]) -> anyhow::Result<(Spawned, Vec<TargetSpec>)> {
    let exe = std::env::current_exe()?;
    let mut spawned = Spawned {
        children: Vec::new(),
    };
    let mut specs = Vec::new();
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args(["serve", "--ephemeral", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("VKEY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take();
        spawned.children.push(child);
        let Some(stdout) = stdout else {
            anyhow::bail!("spawned vkey has no stdout");
        };
        let mut lines = BufReader::new(stdout);
        let mut address = None;
        for _ in 0..3 {
            let mut l = String::new();
            if lines.read_line(&mut l)? == 0 {
                break;
            }
            if let Some(rest) = l.strip_prefix("listening on ") {
                address = rest.split_whitespace().next().map(str::to_string);
            }
        }
        let Some(address) = address else {
            anyhow::bail!("spawned `vkey serve` {extra:?} did not start (see its error above)");
        };
        // Keep reading whatever it prints later, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            while matches!(lines.read(&mut sink), Ok(k) if k > 0) {}
        });
        specs.push(TargetSpec {
            label: Some(format!("vkey-{}", i + 1)),
            address,
            busid: "1-1".into(),
            pid: Some(pid),
        });
    }
    Ok((spawned, specs))
}
