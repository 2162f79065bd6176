//! The CPU time of a local server process, from /proc: which process listens on a TCP
//! port (/proc/net/tcp{,6} socket inode → /proc/PID/fd), and the time its threads ran
//! (/proc/PID/task/*/schedstat, nanoseconds, so a 100 µs operation is visible).

use std::fs;
use std::net::SocketAddr;

/// The process that listens on `addr`'s port (any local address: 0.0.0.0, ::, or the
/// address itself). `None` if it is not on this machine or not ours to look at.
pub fn listening_pid(addr: SocketAddr) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|t| listening_inodes(&t, addr.port()))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Inodes of sockets in state LISTEN (0A) on `port`, from one /proc/net/tcp* table:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            (local.ends_with(&want) && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Nanoseconds the process's live threads have run (sum of schedstat's first field).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("schedstat"))
            && let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
        {
            total = total.saturating_add(ns);
            any = true;
        }
    }
    any.then_some(total)
}

/// Nanoseconds the calling thread has run (/proc/thread-self/schedstat).
pub fn thread_cpu_ns() -> Option<u64> {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's command name (/proc/PID/comm).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener_and_cpu() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listening_pid(addr), Some(std::process::id()));
        assert!(cpu_ns(std::process::id()).is_some_and(|ns| ns > 0));
        // This thread's counter grows while it works (updated at context switches and
        // ticks, hence the short sleeps); other test threads may come and go meanwhile.
        let a = thread_cpu_ns().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        while thread_cpu_ns().unwrap() <= a && std::time::Instant::now() < deadline {
            for i in 0..200_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(thread_cpu_ns().unwrap() > a);
    }

    #[test]
    fn parses_a_tcp_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0CA8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n   1: 0100007F:0CA8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        assert_eq!(listening_inodes(t, 3240), vec![12345]);
        assert!(listening_inodes(t, 3241).is_empty());
        assert!(listening_inodes("garbage\nx y\n", 1).is_empty());
    }
}
