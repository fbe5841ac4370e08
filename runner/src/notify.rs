//! systemd's readiness protocol (`sd_notify(3)`), without libsystemd: one datagram of
//! newline-separated `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET`.
//!
//! Owns only the sending. It must not decide *when* the daemon is ready: `server::serve` sends
//! `READY=1` once the listener is bound and the profiles, cgroups and slots are set up,
//! `RELOADING=1` then `READY=1` around a config reload (SIGHUP), and `STOPPING=1` when a stop
//! signal arrives. Without `$NOTIFY_SOCKET` (started by hand, or by a unit that is not
//! `Type=notify`) every call is a no-op.
//!
//! The protocol: <https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html>.
//! A name starting with `@` is a socket in the abstract namespace (the `@` stands for the
//! leading NUL byte); otherwise it is a filesystem path.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` to `$NOTIFY_SOCKET` if it is set. `Ok(false)`: not under a notify-aware
/// supervisor, nothing sent.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => {
            send(&socket.to_string_lossy(), state)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Like [`notify`], but a failure is logged, not returned: a lost notification must not stop
/// the daemon (systemd then times the start out and says so in its own log).
pub fn notify_or_log(state: &str) {
    if let Err(err) = notify(state) {
        tracing::warn!(%err, state, "cannot notify systemd ({NOTIFY_SOCKET})");
    }
}

/// Sends one datagram `state` to the socket named `socket` (a path, or `@name` for the abstract
/// namespace).
pub fn send(socket: &str, state: &str) -> io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        // A datagram is sent whole or not at all; guard anyway so a partial send is an error.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to the notify socket",
        ));
    }
    Ok(())
}

/// The `READY=1` message, with a human-readable `STATUS=` shown by `systemctl status`.
pub fn ready_message(languages: usize, listen: &std::net::SocketAddr) -> String {
    format!("READY=1\nSTATUS=serving {languages} languages on {listen}")
}

/// The message sent when a SIGHUP reload starts (`READY=1` follows when it is done).
pub const RELOADING: &str = "RELOADING=1\nSTATUS=reloading the config";

/// The message sent when a stop signal arrives (in-flight requests are draining).
pub const STOPPING: &str = "STOPPING=1\nSTATUS=draining in-flight requests";

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Sd_notify datagrams to path and abstract sockets.
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8")
    }

    #[test]
    fn test_send_to_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let listen = "127.0.0.1:4000".parse().expect("addr");
        send(
            path.to_str().expect("UTF-8 path"),
            &ready_message(7, &listen),
        )
        .expect("send");
        assert_eq!(
            recv(&server),
            "READY=1\nSTATUS=serving 7 languages on 127.0.0.1:4000"
        );
        send(path.to_str().expect("UTF-8 path"), STOPPING).expect("send");
        assert!(recv(&server).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn test_send_to_abstract_socket() {
        let name = format!("runner-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send(&format!("@{name}"), "READY=1").expect("send");
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn test_send_to_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.sock");
        assert!(send(path.to_str().expect("UTF-8 path"), "READY=1").is_err());
    }
}
