//! A two-namespace lab matching the example policy: a peer host with an allowlisted, an unknown
//! and a denylisted source address (v4 and v6), joined by a veth pair to an SBC host.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::netns::{NetNs, add_addr, veth};

pub const SBC_IF: &str = "sbc0";
pub const PEER_IF: &str = "peer0";
pub const SBC_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SBC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// In the example policy's `carrier-a` allow entry.
pub const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const ALLOWED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// In no list.
pub const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
pub const UNKNOWN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
/// In the example policy's `known-scanners` deny entry.
pub const DENIED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 66, 10);
pub const DENIED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 0x10);

pub struct Lab {
    pub peer: NetNs,
    pub sbc: NetNs,
}

impl Lab {
    pub fn new(tag: &str) -> Result<Lab> {
        let peer = NetNs::new(&format!("{tag}-peer"))?;
        let sbc = NetNs::new(&format!("{tag}-sbc"))?;
        veth(&peer, PEER_IF, &sbc, SBC_IF)?;
        add_addr(&sbc, SBC_IF, "198.18.0.1/15")?;
        add_addr(&sbc, SBC_IF, "2001:db8::1/32")?;
        for source in [ALLOWED_V4, UNKNOWN_V4, DENIED_V4] {
            add_addr(&peer, PEER_IF, &format!("{source}/15"))?;
        }
        for source in [ALLOWED_V6, UNKNOWN_V6, DENIED_V6] {
            add_addr(&peer, PEER_IF, &format!("{source}/32"))?;
        }
        // Static neighbours: a burst sent before ARP/NDP resolves would overflow the kernel's
        // unresolved queue and lose datagrams that the filter never saw.
        let sbc_mac = mac_text(&sbc, SBC_IF)?;
        let peer_mac = mac_text(&peer, PEER_IF)?;
        for addr in [SBC_V4.to_string(), SBC_V6.to_string()] {
            peer.ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &sbc_mac,
                "dev",
                PEER_IF,
                "nud",
                "permanent",
            ])?;
        }
        let sources: [IpAddr; 6] = [
            ALLOWED_V4.into(),
            UNKNOWN_V4.into(),
            DENIED_V4.into(),
            ALLOWED_V6.into(),
            UNKNOWN_V6.into(),
            DENIED_V6.into(),
        ];
        for addr in sources {
            let addr = addr.to_string();
            sbc.ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &peer_mac,
                "dev",
                SBC_IF,
                "nud",
                "permanent",
            ])?;
        }
        Ok(Lab { peer, sbc })
    }

    pub fn sbc_addr(v6: bool) -> IpAddr {
        if v6 { SBC_V6.into() } else { SBC_V4.into() }
    }

    /// Sends `count` datagrams from `source` (a peer address) to the SBC's `port`.
    pub fn send_from(&self, source: IpAddr, port: u16, count: usize, payload: &'static [u8]) {
        let dest = SocketAddr::new(Lab::sbc_addr(source.is_ipv6()), port);
        self.peer
            .run(move || send_udp(source, dest, count, payload))
            .expect("the peer namespace runs it")
            .expect("the datagrams are sent");
    }
}

/// Sends `count` datagrams of `payload` from `source` (an address of this namespace) to `dest`.
/// Call inside the sending namespace.
pub fn send_udp(source: IpAddr, dest: SocketAddr, count: usize, payload: &[u8]) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))?;
    for _ in 0..count {
        // A full socket buffer on a fast sender: wait and retry, never lose a datagram here.
        loop {
            match socket.send_to(payload, dest) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Tries a TCP connection from `source` to `dest`; true when it is accepted within `timeout`.
pub fn tcp_connects(source: IpAddr, dest: SocketAddr, timeout: Duration) -> bool {
    let domain = if dest.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // std's TcpStream cannot bind before connecting; do it by hand.
    // SAFETY: plain socket calls with valid sockaddr buffers.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let (src, src_len) = sockaddr(SocketAddr::new(source, 0));
        if libc::bind(fd, &src as *const _ as *const libc::sockaddr, src_len) != 0 {
            libc::close(fd);
            return false;
        }
        let stream = <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let _ = stream.set_nonblocking(true);
        let (dst, dst_len) = sockaddr(dest);
        libc::connect(fd, &dst as *const _ as *const libc::sockaddr, dst_len);
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let ready = libc::poll(&mut poll, 1, timeout.as_millis() as i32);
        ready == 1 && stream.take_error().ok().flatten().is_none() && stream.peer_addr().is_ok()
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is valid; we fill the family-specific prefix.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Counts datagrams per source address on a UDP port until stopped.
pub struct UdpCounter {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<HashMap<IpAddr, usize>>,
}

impl UdpCounter {
    /// Binds `[::]:port` (v4 and v6) inside `ns` and starts counting.
    pub fn start(ns: &NetNs, port: u16) -> Result<UdpCounter> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = ns.spawn(move || {
            let socket = match UdpSocket::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
            {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = bound_tx.send(Err(e.to_string()));
                    return HashMap::new();
                }
            };
            let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
            // Bursts of a few hundred datagrams must not overflow the default receive
            // buffer while this thread waits for a busy CPU: lost here would look like XDP.
            force_receive_buffer(&socket, 16 << 20);
            let _ = bound_tx.send(Ok(()));
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            let mut buffer = vec![0u8; 65_536];
            loop {
                match socket.recv_from(&mut buffer) {
                    Ok((_, from)) => *counts.entry(canonical(from.ip())).or_default() += 1,
                    Err(_) if flag.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            counts
        })?;
        match bound_rx.recv() {
            Ok(Ok(())) => Ok(UdpCounter { stop, handle }),
            Ok(Err(e)) => anyhow::bail!("bind udp/{port}: {e}"),
            Err(_) => anyhow::bail!("listener thread died"),
        }
    }

    /// Waits until nothing arrived for `quiet`, then stops and returns the counts.
    pub fn finish(self, quiet: Duration) -> HashMap<IpAddr, usize> {
        std::thread::sleep(quiet);
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("listener thread")
    }
}

fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid fd and an int option value. SO_RCVBUFFORCE
    // (root) ignores rmem_max; failure leaves the default, which only makes loss likelier.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// v4-mapped v6 addresses (from a dual-stack socket) as plain v4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Sends raw Ethernet frames out of `iface` (AF_PACKET). Call inside the sending namespace.
pub fn inject(iface: &str, frames: &[Vec<u8>]) -> Result<()> {
    let index = sipguard::dataplane::ifindex(iface)
        .ok_or_else(|| anyhow::anyhow!("no interface {iface}"))?;
    // SAFETY: plain socket calls; the sockaddr_ll is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            anyhow::bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let socket = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        for frame in frames {
            let sent = libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if sent != frame.len() as isize {
                anyhow::bail!("AF_PACKET send: {}", std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Everything that arrives on an interface after XDP let it pass (an AF_PACKET tap).
pub struct Capture {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    pub fn start(ns: &NetNs, iface: &str) -> Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let iface = iface.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = ns.spawn(move || {
            let mut frames = Vec::new();
            // SAFETY: plain socket calls with initialised buffers.
            unsafe {
                let protocol = i32::from((libc::ETH_P_ALL as u16).to_be());
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    protocol,
                );
                let index = sipguard::dataplane::ifindex(&iface).unwrap_or(0);
                if fd < 0 || index == 0 {
                    let _ = ready_tx.send(Err(std::io::Error::last_os_error().to_string()));
                    return frames;
                }
                let socket = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = protocol as u16;
                addr.sll_ifindex = index as i32;
                libc::bind(
                    fd,
                    &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                let timeout = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                let _ = ready_tx.send(Ok(()));
                let mut buffer = vec![0u8; 65_536];
                loop {
                    let n = libc::recv(
                        std::os::fd::AsRawFd::as_raw_fd(&socket),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                    );
                    if n > 0 {
                        frames.push(buffer[..n as usize].to_vec());
                    } else if flag.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            frames
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Capture { stop, handle }),
            Ok(Err(e)) => anyhow::bail!("capture on {}: {e}", ns.name()),
            Err(_) => anyhow::bail!("capture thread died"),
        }
    }

    /// Waits `quiet`, stops, returns the frames seen.
    pub fn finish(self, quiet: Duration) -> Vec<Vec<u8>> {
        std::thread::sleep(quiet);
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("capture thread")
    }
}

/// The MAC address of an interface in a namespace.
pub fn mac_of(ns: &NetNs, iface: &str) -> Result<[u8; 6]> {
    let text = ns.ip(&["-o", "link", "show", iface])?;
    let field = text
        .split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no MAC in {text}"))?;
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(field.split(':')) {
        *slot = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

fn mac_text(ns: &NetNs, iface: &str) -> Result<String> {
    Ok(mac_of(ns, iface)?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Pins the calling thread to `cpu` until the guard is dropped (then restores the old mask).
pub struct Pinned(Option<libc::cpu_set_t>);

impl Pinned {
    pub fn to(cpu: usize) -> Pinned {
        // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut old) != 0 {
                return Pinned(None);
            }
            let mut new: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut new);
            if libc::sched_setaffinity(0, size, &new) != 0 {
                return Pinned(None);
            }
            Pinned(Some(old))
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restoring a mask the kernel gave us.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
        }
    }
}
