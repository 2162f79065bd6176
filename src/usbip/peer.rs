//! Who is at the other end of a USB/IP connection. USB/IP has no authentication, so
//! on Linux the server accepts a peer only when its socket belongs to root (the
//! kernel's `usbip attach`) or to vkey's own user: other local users could otherwise
//! import the key, wipe it (reset is allowed after every import) or burn its PIN
//! retries. The owner of the peer's socket is read from /proc/net/tcp{,6}, matched by
//! the connection's address pair.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which peers may use the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Root or the user vkey runs as (the default).
    RootOrSameUser,
    /// Anyone who can connect (`--allow-any-user`).
    AnyUser,
}

/// The user vkey runs as (the owner of /proc/self), if known.
pub fn own_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The uid owning the socket at `peer` connected to `local`, from /proc/net/tcp{,6};
/// `None` if no such socket is listed (another network namespace, not Linux).
pub fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        find_owner(&table, peer, local)
    })
}

/// Looks up the socket whose local address is `peer` and remote address `local` in
/// one /proc/net/tcp-format table.
fn find_owner(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (l, r, uid) = (cols.get(1)?, cols.get(2)?, cols.get(7)?);
        let same = |text: &str, addr: SocketAddr| {
            parse_addr(text).is_some_and(|a| normalise(a) == normalise(addr))
        };
        (same(l, peer) && same(r, local))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

fn normalise(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// "0100007F:0CA8" (IPv4) or 32 hex digits:port (IPv6): each 32-bit word as the kernel
/// printed it, in this machine's byte order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_owner_of_the_peer_socket() {
        let lo = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {a}:0CA8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             1: {a}:9C40 {a}:0CA8 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
             2: {a}:0CA8 {a}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n",
            a = lo([127, 0, 0, 1])
        );
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:3240".parse().unwrap();
        assert_eq!(find_owner(&table, peer, local), Some(1000));
        assert_eq!(find_owner(&table, local, peer), Some(0));
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(find_owner(&table, other, local), None);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(find_owner(&table, mapped, local), Some(1000));
    }

    #[test]
    fn own_connection_is_found_in_proc() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, peer) = l.accept().unwrap();
        if std::path::Path::new("/proc/net/tcp").exists() {
            assert_eq!(peer_uid(peer, l.local_addr().unwrap()), own_uid());
        }
        drop(c);
    }
}
