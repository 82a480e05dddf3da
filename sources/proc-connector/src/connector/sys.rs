//! The netlink socket: the only place with `unsafe` (thin `libc` calls).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// What one `recvmsg` gave.
pub(crate) enum Received {
    /// A datagram of `len` bytes from netlink port `sender` (`0` is the kernel);
    /// `truncated` if it did not fit the buffer.
    Datagram {
        len: usize,
        sender: u32,
        truncated: bool,
    },
    /// The receive timeout expired, or (non-blocking) nothing was queued: the queue
    /// is empty.
    Nothing,
    /// A signal interrupted the wait.
    Interrupted,
    /// `ENOBUFS`: the kernel dropped messages for this socket.
    Overrun,
}

/// A `NETLINK_CONNECTOR` socket bound to the process-events group.
pub(crate) struct NetlinkSocket {
    fd: OwnedFd,
    port: u32,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn sockaddr_nl(pid: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = pid;
    addr.nl_groups = groups;
    addr
}

const SOCKADDR_NL_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;

impl NetlinkSocket {
    /// Opens a `NETLINK_CONNECTOR` socket and binds it to `groups` (0 for none).
    pub(crate) fn open(groups: u32) -> Result<NetlinkSocket, (&'static str, io::Error)> {
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(("socket(AF_NETLINK, NETLINK_CONNECTOR)", last_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = sockaddr_nl(0, groups);
        // SAFETY: `addr` is a valid sockaddr_nl that outlives the call; the length
        // matches its type.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                SOCKADDR_NL_LEN,
            )
        };
        if rc < 0 {
            return Err(("bind to the process-events group", last_error()));
        }
        let mut bound = sockaddr_nl(0, 0);
        let mut len = SOCKADDR_NL_LEN;
        // SAFETY: `bound` and `len` are valid for writes and sized as declared.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&raw mut bound).cast::<libc::sockaddr>(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(("getsockname", last_error()));
        }
        Ok(NetlinkSocket {
            fd,
            port: bound.nl_pid,
        })
    }

    /// The port id the kernel gave this socket.
    pub(crate) fn port(&self) -> u32 {
        self.port
    }

    fn set_int_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `value` is a c_int that outlives the call; the length matches.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast::<libc::c_void>(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 { Err(last_error()) } else { Ok(()) }
    }

    fn int_option(&self, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes and sized as declared.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast::<libc::c_void>(),
                &raw mut len,
            )
        };
        if rc < 0 { Err(last_error()) } else { Ok(value) }
    }

    /// Sets the receive buffer: `SO_RCVBUFFORCE` (ignores `rmem_max`, needs
    /// `CAP_NET_ADMIN`), else `SO_RCVBUF`. Returns the size the kernel reports (it
    /// doubles the request for bookkeeping) and whether the forced form worked.
    pub(crate) fn set_receive_buffer(&self, bytes: usize) -> io::Result<(usize, bool)> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX / 2);
        let forced = self
            .set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
            .is_ok();
        if !forced {
            self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF, value)?;
        }
        Ok((self.receive_buffer()?, forced))
    }

    /// The receive buffer size as the kernel reports it.
    pub(crate) fn receive_buffer(&self) -> io::Result<usize> {
        self.int_option(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|v| usize::try_from(v).unwrap_or(0))
    }

    /// Makes blocking receives give up after `timeout` (so a loop can check a stop flag).
    pub(crate) fn set_receive_timeout(&self, timeout: Duration) -> io::Result<()> {
        let mut tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 1_000_000: fits every platform's suseconds_t.
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        if tv.tv_sec == 0 && tv.tv_usec == 0 {
            // A zero timeval means "block forever"; use the smallest real timeout.
            tv.tv_usec = 1;
        }
        // SAFETY: `tv` is a valid timeval that outlives the call; the length matches.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast::<libc::c_void>(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 { Err(last_error()) } else { Ok(()) }
    }

    /// Sends one datagram to netlink port `to` (0 is the kernel).
    pub(crate) fn send_to(&self, datagram: &[u8], to: u32) -> io::Result<()> {
        let addr = sockaddr_nl(to, 0);
        loop {
            // SAFETY: `datagram` is valid for reads of its length; `addr` is a valid
            // sockaddr_nl of the declared length.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    datagram.as_ptr().cast::<libc::c_void>(),
                    datagram.len(),
                    0,
                    (&raw const addr).cast::<libc::sockaddr>(),
                    SOCKADDR_NL_LEN,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let error = last_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Receives one datagram into `buf`, blocking up to the receive timeout (or not at
    /// all with `nonblocking`), and says who sent it.
    pub(crate) fn receive(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<Received> {
        let mut addr = sockaddr_nl(0, 0);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&raw mut addr).cast::<libc::c_void>();
        msg.msg_namelen = SOCKADDR_NL_LEN;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `msg` points at `addr` and `iov` (which points at `buf`), all valid
        // for writes of the declared lengths for the duration of the call.
        let rc = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, flags) };
        if rc < 0 {
            let error = last_error();
            return match error.raw_os_error() {
                Some(libc::ENOBUFS) => Ok(Received::Overrun),
                Some(code) if code == libc::EAGAIN || code == libc::EWOULDBLOCK => {
                    Ok(Received::Nothing)
                }
                Some(libc::EINTR) => Ok(Received::Interrupted),
                _ => Err(error),
            };
        }
        let len = usize::try_from(rc).unwrap_or(0).min(buf.len());
        let from_netlink = msg.msg_namelen as usize >= mem::size_of::<libc::sockaddr_nl>()
            && addr.nl_family == libc::AF_NETLINK as libc::sa_family_t;
        Ok(Received::Datagram {
            len,
            // An address that is not netlink cannot be the kernel: report it as a port
            // no kernel message has.
            sender: if from_netlink { addr.nl_pid } else { u32::MAX },
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the events' `timestamp_ns`. The
/// kernel stamps events with its own clock, which a time namespace's offset does not
/// move, so that offset is taken back out.
pub(crate) fn monotonic_ns() -> u64 {
    let ns = i128::from(clock_ns(libc::CLOCK_MONOTONIC)) - monotonic_offset_ns();
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// The `monotonic` offset of this process's time namespace (`/proc/self/timens_offsets`,
/// Linux 5.6), in nanoseconds; 0 without one. Fixed once processes are in the namespace.
fn monotonic_offset_ns() -> i128 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::fs::read_to_string("/proc/self/timens_offsets")
            .ok()
            .and_then(|text| parse_monotonic_offset(&text))
            .unwrap_or(0)
    })
}

/// The `monotonic <seconds> <nanoseconds>` line of a `timens_offsets` file.
fn parse_monotonic_offset(text: &str) -> Option<i128> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != "monotonic" {
            return None;
        }
        let seconds: i128 = fields.next()?.parse().ok()?;
        let nanoseconds: i128 = fields.next()?.parse().ok()?;
        Some(seconds * 1_000_000_000 + nanoseconds)
    })
}

/// `CLOCK_BOOTTIME` minus `CLOCK_MONOTONIC` (time spent suspended), in nanoseconds:
/// `/proc` start times count from boot in the first, events in the second.
pub(crate) fn suspended_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME).saturating_sub(monotonic_ns())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc` start times.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; both clocks used here exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    if rc < 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::parse_monotonic_offset;

    #[test]
    fn the_monotonic_offset_is_read_from_timens_offsets() {
        let text = "monotonic      3600        5\nboottime      -2     0\n";
        assert_eq!(parse_monotonic_offset(text), Some(3_600_000_000_005));
        let text = "boottime 1 0\nmonotonic -1 500000000\n";
        assert_eq!(parse_monotonic_offset(text), Some(-500_000_000));
        assert_eq!(parse_monotonic_offset("boottime 1 0\n"), None);
        assert_eq!(parse_monotonic_offset("monotonic x 0\n"), None);
    }
}
