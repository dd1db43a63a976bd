//! The lock-out guard: `check`, `up`, `reload`, `revoke` and `block` refuse a change that
//! would cut off the SSH session they run from (unless `--force`), and say which rule is
//! missing.
//!
//! The session is read from `SSH_CONNECTION` (`CLIENT CLIENT_PORT SERVER SERVER_PORT`, set
//! by sshd) in the command's own environment or, since `sudo` (env_reset), `sudo -i` and
//! `su -l` clear it from the command's, in the nearest ancestor's that has it (root reads
//! every process's `/proc/PID/environ`). A session counts only while its TCP connection
//! is established in this network namespace (`/proc/net/tcp`, `tcp6`): the variable
//! outlives its session in a tmux or screen started from an old login. Its packets meet the filter when the server address is the policy's host
//! address, or is on the filtered interface (then the policy names the wrong address and
//! drops the session as FORWARD traffic). It survives the change when the programs would
//! admit its client's SYN to the server port: not an anti-spoof source, admitted by an
//! `in` rule's allow-list, as the kernel looks it up ([`crate::compile::MapPlan::admits`]); the returns
//! then ride that flow (or the pickup of sessions older than the filter).
use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use firewall_common::{ALLOW_TRAP, AllowKey, Direction, PROTO_TCP};

use crate::{
    compile::{Ids, plan},
    kernel::maps::Enforcement,
    policy::{Policy, Prefix, to_addr},
};

/// The SSH session a command runs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SshSession {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}

/// The variable sshd sets.
const VARIABLE: &str = "SSH_CONNECTION";
/// How far up the process tree to look (a loop in a racing read ends here too).
const MAX_ANCESTORS: usize = 64;

impl SshSession {
    /// The SSH session this command runs from: `SSH_CONNECTION` in its own environment
    /// or its nearest ancestor's, the first of those whose connection is still
    /// established in this network namespace.
    pub fn current() -> Option<SshSession> {
        let sessions: Vec<SshSession> =
            candidates().iter().filter_map(|text| SshSession::parse(text)).collect();
        if sessions.is_empty() {
            return None;
        }
        let established = established_connections();
        sessions.into_iter().find(|s| s.is_among(&established))
    }

    /// Whether its connection is among `established` (local, remote) pairs.
    fn is_among(&self, established: &[(SocketAddr, SocketAddr)]) -> bool {
        let server = SocketAddr::new(self.server, self.server_port);
        let client = SocketAddr::new(self.client, self.client_port);
        established.contains(&(server, client))
    }

    /// `"192.0.2.10 53422 198.51.100.1 22"`; IPv4-mapped addresses are taken as IPv4.
    pub fn parse(text: &str) -> Option<SshSession> {
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let [client, client_port, server, server_port] = fields[..] else {
            return None;
        };
        let addr = |text: &str| text.parse::<IpAddr>().ok().map(|a| a.to_canonical());
        Some(SshSession {
            client: addr(client)?,
            client_port: client_port.parse().ok()?,
            server: addr(server)?,
            server_port: server_port.parse().ok()?,
        })
    }
}

impl SshSession {
    /// Whether the session goes to one of `policy`'s host addresses (either family).
    pub fn to_host(&self, policy: &Policy) -> bool {
        policy.is_host_address(self.server)
    }
}

impl std::fmt::Display for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} port {} to {} port {}", self.client, self.client_port, self.server, self.server_port)
    }
}

/// `SSH_CONNECTION` as this process's environment has it, then as each ancestor's does,
/// nearest first.
fn candidates() -> Vec<String> {
    let mut found: Vec<String> = std::env::var(VARIABLE).ok().into_iter().collect();
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..MAX_ANCESTORS {
        if pid == 0 {
            break;
        }
        if let Ok(environ) = fs::read(format!("/proc/{pid}/environ"))
            && let Some(text) = environ_variable(&environ, VARIABLE)
            && !found.contains(&text)
        {
            found.push(text);
        }
        let Some(parent) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_parent(&s))
        else {
            break;
        };
        pid = parent;
    }
    found
}

/// `NAME`'s value in a `/proc/PID/environ` (`NAME=value` entries, NUL-separated).
fn environ_variable(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(value.to_vec()).ok()
    })
}

/// The parent pid (field 4) of a `/proc/PID/stat` line.
fn stat_parent(stat: &str) -> Option<u32> {
    crate::proc_stat_field(stat, 4)?.parse().ok()
}

/// The established TCP connections of this network namespace, as (local, remote).
fn established_connections() -> Vec<(SocketAddr, SocketAddr)> {
    let mut out = Vec::new();
    for (path, family) in [("/proc/net/tcp", Family::V4), ("/proc/net/tcp6", Family::V6)] {
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(parse_proc_net_tcp(&text, family));
        }
    }
    out
}

/// Which of /proc/net/tcp's two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The established connections (state 01) of a `/proc/net/tcp` or `tcp6`, as (local,
/// remote); IPv4-mapped addresses as IPv4.
fn parse_proc_net_tcp(text: &str, family: Family) -> Vec<(SocketAddr, SocketAddr)> {
    const ESTABLISHED: &str = "01";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace().skip(1);
            let (local, remote, state) = (fields.next()?, fields.next()?, fields.next()?);
            (state == ESTABLISHED).then_some(())?;
            Some((proc_net_addr(local, family)?, proc_net_addr(remote, family)?))
        })
        .collect()
}

/// `0100007F:0016` (IPv4) or 32 hex digits and a port (IPv6): the address's 32-bit words
/// as the kernel holds them, each printed as a native-endian number; the port in hex.
fn proc_net_addr(field: &str, family: Family) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(8 * i..8 * i + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match (family, words.as_slice()) {
        (Family::V4, [word]) => IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes())),
        (Family::V6, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A change that would cut the session off.
#[derive(Debug, thiserror::Error)]
#[error("this SSH session ({session}) would be cut off: {reason}; {fix}, or pass --force")]
pub struct LockOut {
    pub session: SshSession,
    pub reason: String,
    pub fix: String,
}

/// Whether `addr` is one of `iface`'s addresses.
fn on_interface(iface: &str, addr: IpAddr) -> bool {
    crate::kernel::filter::interface_addresses(iface).is_some_and(|addrs| addrs.contains(&addr))
}

/// Refuses `policy` on `iface` (the policy's `[host] interface` if `None`) when it would
/// cut `session` off.
pub fn check(policy: &Policy, iface: Option<&str>, session: &SshSession) -> Result<(), LockOut> {
    let fail = |reason: String, fix: String| Err(LockOut { session: *session, reason, fix });
    if !session.to_host(policy) {
        let iface = iface.or(policy.interface.as_deref());
        let Some(iface) = iface.filter(|iface| on_interface(iface, session.server)) else {
            // Another interface's session: this filter never sees it.
            return Ok(());
        };
        let listed = |addresses: Vec<String>| match addresses.len() {
            0 => "none".to_owned(),
            1 => addresses.concat(),
            _ => format!("[{}]", addresses.join(", ")),
        };
        let (key, what) = match session.server {
            IpAddr::V4(_) => {
                ("address", listed(policy.addresses().iter().map(ToString::to_string).collect()))
            }
            IpAddr::V6(_) => {
                ("address6", listed(policy.addresses6().iter().map(ToString::to_string).collect()))
            }
        };
        return fail(
            format!("it reaches {} on {iface}, and the policy's [host] {key} is {what}", session.server),
            format!("set [host] {key} = \"{}\"", session.server),
        );
    }
    let client = Prefix::host(session.client);
    if let Some(spoof) = policy.antispoof_sources.iter().find(|p| p.contains(session.client)) {
        return fail(
            format!("its client {} is inside anti-spoof source {spoof}", session.client),
            format!("take {spoof} out of [antispoof] sources"),
        );
    }
    let ids = Ids::assign(policy, &Ids::default());
    let key = AllowKey {
        direction: Direction::In as u8,
        protocol: PROTO_TCP,
        port: session.server_port,
        peer: to_addr(session.client),
    };
    // A trap matches the session, and admits nothing.
    if plan(policy, &ids).admits(&key).is_some_and(|v| v.flags & ALLOW_TRAP == 0) {
        return Ok(());
    }
    let serving: Vec<&str> = policy
        .rules
        .iter()
        .filter(|r| {
            r.direction == Direction::In
                && r.services.iter().any(|s| s.has_port(PROTO_TCP, session.server_port))
        })
        .map(|r| r.name.as_str())
        .collect();
    match serving.as_slice() {
        [] => fail(
            format!("no rule admits tcp port {} in", session.server_port),
            format!(
                "add a rule with direction = \"in\", protocols = [\"tcp\"], port = {}, peers = [\"{client}\"]",
                session.server_port
            ),
        ),
        [rule, ..] => fail(
            format!(
                "rule {} serves tcp port {} but not its client {}",
                serving.join(", "),
                session.server_port,
                session.client
            ),
            format!("add {client} to rule {rule}'s peers"),
        ),
    }
}

/// Whether a command refuses to cut off the SSH session it runs from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionGuard {
    /// Refuse (the default).
    #[default]
    Check,
    /// Go ahead anyway (`--force`; a rollback, which puts back what was in force).
    Skip,
}

/// The guard for a live filter that will be in `mode` with `policy`: audit mode drops
/// nothing, so it cuts no session off and is not checked.
pub fn guard_in(
    policy: &Policy,
    iface: &str,
    mode: Enforcement,
    session_guard: SessionGuard,
) -> Result<(), LockOut> {
    match mode {
        Enforcement::Audit => Ok(()),
        Enforcement::Enforce => guard(policy, Some(iface), session_guard),
    }
}

/// The guard as commands use it: nothing to check outside an SSH session, or with
/// [`SessionGuard::Skip`].
pub fn guard(policy: &Policy, iface: Option<&str>, session_guard: SessionGuard) -> Result<(), LockOut> {
    match SshSession::current() {
        Some(session) if session_guard == SessionGuard::Check => check(policy, iface, &session),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[host]\naddress = \"198.51.100.1\"\n[antispoof]\nsources = [\"10.0.0.0/8\"]\n[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = [\"192.0.2.10\", \"203.0.113.0/24\"]\n{extra}"
        );
        crate::policy::parse(&text, std::path::Path::new("p.toml")).unwrap()
    }

    fn session(text: &str) -> SshSession {
        SshSession::parse(text).unwrap()
    }

    #[test]
    fn reads_sshd_s_variable() {
        let s = session("192.0.2.10 53422 198.51.100.1 22");
        assert_eq!(s.client, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!((s.client_port, s.server_port), (53422, 22));
        assert_eq!(session("::ffff:192.0.2.10 1 ::ffff:198.51.100.1 22").client, s.client);
        assert_eq!(SshSession::parse("192.0.2.10 53422"), None);
        assert_eq!(SshSession::parse("nonsense"), None);
    }

    #[test]
    fn finds_the_variable_in_an_environ() {
        let environ =
            b"HOME=/root\0SSH_CONNECTION_X=no\0SSH_CONNECTION=192.0.2.10 53422 198.51.100.1 22\0TERM=xterm\0";
        assert_eq!(
            environ_variable(environ, "SSH_CONNECTION").as_deref(),
            Some("192.0.2.10 53422 198.51.100.1 22")
        );
        assert_eq!(environ_variable(b"HOME=/root\0", "SSH_CONNECTION"), None);
        assert_eq!(stat_parent("77 (sudo (x) y) S 76 77 77 0"), Some(76));
        // Our own parent, as the kernel says.
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(stat_parent(&stat), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn reads_established_connections_of_both_families() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
           1: 016433C6:007A 077100CB:C4E8 01 00000000:00000000 02:0009F6C5 00000000     0        0 2 4 0 20 4 30 10 -1\n\
           2: 016433C6:007A 087100CB:C4E9 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0\n";
        let v4 = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse_proc_net_tcp(tcp, Family::V4),
            vec![(v4("198.51.100.1:122"), v4("203.0.113.7:50408"))],
            "little-endian words; listening and TIME_WAIT sockets are not sessions"
        );
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
           0: 0000000000000000FFFF0000016433C6:007A 0000000000000000FFFF0000077100CB:C4E8 01 0\n\
           1: B80D0120000000000000000001000000:0016 B80D0120000000000000000007000000:9C40 01 0\n";
        assert_eq!(
            parse_proc_net_tcp(tcp6, Family::V6),
            vec![
                (v4("198.51.100.1:122"), v4("203.0.113.7:50408")),
                (v4("[2001:db8::1]:22"), v4("[2001:db8::7]:40000")),
            ],
            "IPv4-mapped sessions as IPv4"
        );
        let session = SshSession::parse("203.0.113.7 50408 198.51.100.1 122").unwrap();
        assert!(session.is_among(&parse_proc_net_tcp(tcp, Family::V4)));
        let gone = SshSession::parse("203.0.113.8 50409 198.51.100.1 122").unwrap();
        assert!(!gone.is_among(&parse_proc_net_tcp(tcp, Family::V4)), "a TIME_WAIT session is gone");
    }

    #[test]
    fn admits_listed_clients_and_prefixes() {
        let p = policy("");
        assert!(check(&p, None, &session("192.0.2.10 50000 198.51.100.1 22")).is_ok());
        assert!(check(&p, None, &session("203.0.113.77 50000 198.51.100.1 22")).is_ok());
        // Another address, on no filtered interface: not this filter's session.
        assert!(check(&p, None, &session("192.0.2.99 50000 192.0.2.1 22")).is_ok());
    }

    #[test]
    fn names_the_rule_that_misses_the_client() {
        let err = check(&policy(""), None, &session("192.0.2.99 50000 198.51.100.1 22")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this SSH session (192.0.2.99 port 50000 to 198.51.100.1 port 22) would be cut off: rule ssh-in serves tcp port 22 but not its client 192.0.2.99; add 192.0.2.99 to rule ssh-in's peers, or pass --force"
        );
    }

    #[test]
    fn says_when_no_rule_serves_the_port() {
        let err = check(&policy(""), None, &session("192.0.2.10 50000 198.51.100.1 2222")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this SSH session (192.0.2.10 port 50000 to 198.51.100.1 port 2222) would be cut off: no rule admits tcp port 2222 in; add a rule with direction = \"in\", protocols = [\"tcp\"], port = 2222, peers = [\"192.0.2.10\"], or pass --force"
        );
    }

    #[test]
    fn anti_spoof_sources_come_first() {
        let err = check(&policy(""), None, &session("10.1.2.3 50000 198.51.100.1 22")).unwrap_err();
        assert!(
            err.to_string().contains("its client 10.1.2.3 is inside anti-spoof source 10.0.0.0/8"),
            "{err}"
        );
    }

    #[test]
    fn a_rule_open_to_anyone_admits() {
        let p = policy(
            "[[rule]]\nname = \"alt-ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 2222\npeers = \"any\"\n",
        );
        assert!(check(&p, None, &session("192.0.2.99 50000 198.51.100.1 2222")).is_ok());
    }

    #[test]
    fn a_range_serves_every_port_in_it() {
        let p = policy(
            "[[rule]]\nname = \"alt-ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nports = [2000, \"2200-2300\"]\npeers = [\"192.0.2.7\"]\n",
        );
        assert!(check(&p, None, &session("192.0.2.7 50000 198.51.100.1 2222")).is_ok());
        let err = check(&p, None, &session("192.0.2.99 50000 198.51.100.1 2222")).unwrap_err();
        assert!(
            err.to_string().contains("rule alt-ssh serves tcp port 2222 but not its client 192.0.2.99"),
            "{err}"
        );
        let err = check(&p, None, &session("192.0.2.7 50000 198.51.100.1 2301")).unwrap_err();
        assert!(err.to_string().contains("no rule admits tcp port 2301 in"), "{err}");
    }

    #[test]
    fn ipv6_sessions_need_address6() {
        let err = check(&policy(""), Some("lo"), &session("::1 50000 ::1 22")).unwrap_err();
        assert!(
            err.to_string().contains("it reaches ::1 on lo, and the policy's [host] address6 is none"),
            "{err}"
        );
    }
}
