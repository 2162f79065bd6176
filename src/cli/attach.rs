//! `vkey serve --attach`: attach each key on this Linux machine through vhci-hcd, as
//! `usbip attach` does: import the device over TCP ourselves, then hand the connected
//! socket to the kernel by writing "port sockfd devid speed" to vhci's sysfs `attach`
//! file. Wait for the key's /dev/hidraw node (found by its USB serial), print it,
//! attach again after a replug, detach on exit.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::key::Key;
use crate::usbip::ExportedDevice;
use crate::usbip::protocol::{OP_REP_IMPORT, OP_REQ_IMPORT, fixed_str, op_header};

const VHCI: &str = "/sys/devices/platform/vhci_hcd.0";
/// How long a key may take to show up as /dev/hidraw* after the attach.
const HIDRAW_WAIT: Duration = Duration::from_secs(30);

/// Refuses early, in one line that says what to run, when attaching cannot work.
pub fn preflight() -> anyhow::Result<()> {
    if !Path::new(VHCI).join("attach").exists() {
        bail!(
            "--attach needs the vhci-hcd kernel module: run `sudo modprobe vhci-hcd` (on Ubuntu runners install it first: `sudo apt-get install linux-modules-extra-$(uname -r)`)"
        );
    }
    if crate::usbip::peer::own_uid() != Some(0) {
        bail!(
            "--attach writes vhci-hcd's sysfs attach file, which needs root: run `sudo vkey serve --attach …`"
        );
    }
    Ok(())
}

/// The vhci ports our keys are attached on, by bus id.
pub struct Attacher {
    ports: Arc<Mutex<Vec<(String, u32)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Attacher {
    /// Attaches every key (waiting for its hidraw node) and keeps re-attaching each
    /// after a replug.
    pub async fn start(server: SocketAddr, keys: &[Arc<Key>]) -> anyhow::Result<Attacher> {
        let ports = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for key in keys {
            let port = attach(server, key).await?;
            ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((key.shared().bus_id().to_string(), port));
            let (key, ports) = (key.clone(), ports.clone());
            tasks.push(tokio::spawn(async move {
                reattach_loop(server, key, ports).await
            }));
        }
        Ok(Attacher { ports, tasks })
    }

    /// Detaches every key (SIGINT / SIGTERM).
    pub async fn detach_all(self) {
        for t in &self.tasks {
            t.abort();
        }
        let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (busid, port) in ports {
            match std::fs::write(Path::new(VHCI).join("detach"), port.to_string()) {
                Ok(()) => println!("{busid}: detached (vhci port {port})"),
                Err(e) => eprintln!("vkey: {busid}: cannot detach vhci port {port}: {e}"),
            }
        }
    }
}

async fn reattach_loop(server: SocketAddr, key: Arc<Key>, ports: Arc<Mutex<Vec<(String, u32)>>>) {
    let mut replugs = key.shared().replugs();
    replugs.mark_unchanged();
    let busid = key.shared().bus_id().to_string();
    while replugs.changed().await.is_ok() {
        // The kernel sees the connection close and frees its port; then plug back in.
        for _ in 0..100 {
            if !key.shared().attached() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match attach(server, &key).await {
            Ok(port) => {
                let mut p = ports.lock().unwrap_or_else(|e| e.into_inner());
                p.retain(|(b, _)| *b != busid);
                p.push((busid.clone(), port));
            }
            Err(e) => eprintln!("vkey: {busid}: re-attach after replug failed: {e:#}"),
        }
    }
}

/// Imports `key` over USB/IP and gives the socket to vhci-hcd; returns the vhci port
/// once the key's hidraw node exists.
async fn attach(server: SocketAddr, key: &Key) -> anyhow::Result<u32> {
    let busid = key.shared().bus_id();
    let serial = key.identity().serial;
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .with_context(|| format!("cannot connect to our own USB/IP server {server}"))?;
    stream.set_nodelay(true)?;
    let mut req = op_header(OP_REQ_IMPORT, 0);
    req.extend_from_slice(&fixed_str(busid, 32));
    stream.write_all(&req).await?;
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).await?;
    let code = u16::from_be_bytes([head[2], head[3]]);
    let status = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if code != OP_REP_IMPORT || status != 0 {
        bail!("import of {busid} refused (status {status})");
    }
    let mut rec = [0u8; 312];
    stream.read_exact(&mut rec).await?;
    let word = |at: usize| u32::from_be_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
    let (busnum, devnum, speed) = (word(288), word(292), word(296));
    let stream = stream.into_std()?;
    let port = free_port(speed)?;
    let line = format!(
        "{port} {} {} {speed}",
        stream.as_raw_fd(),
        (busnum << 16) | devnum
    );
    std::fs::write(Path::new(VHCI).join("attach"), &line)
        .with_context(|| format!("writing \"{line}\" to {VHCI}/attach"))?;
    // The kernel holds its own reference to the socket now.
    drop(stream);
    let node = wait_for_hidraw(&serial).await?;
    println!("{busid}: attached as {} (vhci port {port})", node.display());
    Ok(port)
}

/// A free vhci port for a device of `speed` (USB 2.0 and slower go on the "hs" hub).
fn free_port(speed: u32) -> anyhow::Result<u32> {
    let status = std::fs::read_to_string(Path::new(VHCI).join("status"))
        .context("cannot read vhci-hcd's status")?;
    let hub = if speed >= 5 { "ss" } else { "hs" };
    status
        .lines()
        .skip(1)
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // hub port sta spd dev sockfd local_busid; sta 4 = VDEV_ST_NULL (free)
            (cols.first() == Some(&hub)
                && cols.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(4))
            .then(|| cols.get(1).and_then(|p| p.parse().ok()))
            .flatten()
        })
        .context("no free vhci-hcd port")
}

/// Waits for the hidraw node of the USB device with this serial number.
async fn wait_for_hidraw(serial: &str) -> anyhow::Result<PathBuf> {
    let deadline = tokio::time::Instant::now() + HIDRAW_WAIT;
    loop {
        if let Some(n) = hidraw_for(serial) {
            return Ok(n);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no /dev/hidraw node for serial {serial} after {HIDRAW_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hidraw_for(serial: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/class/hidraw").ok()?;
    for e in entries.flatten() {
        let Ok(dev) = std::fs::canonicalize(e.path()) else {
            continue;
        };
        // Up from …/hidraw/hidrawN to the USB device, which has the serial.
        let found = dev
            .ancestors()
            .take(8)
            .any(|d| std::fs::read_to_string(d.join("serial")).is_ok_and(|s| s.trim() == serial));
        let node = Path::new("/dev").join(e.file_name());
        if found && node.exists() {
            return Some(node);
        }
    }
    None
}
