//! The lock-out guard: `check`, `up`, `reload`, `revoke` and `block` refuse a change that
//! would cut off the SSH session they run from (unless `--force`), and say which rule is
//! missing.
//!
//! The session is read from `SSH_CONNECTION` (`CLIENT CLIENT_PORT SERVER SERVER_PORT`, set
//! by sshd). Its packets meet the filter when the server address is the policy's host
//! address, or is on the filtered interface (then the policy names the wrong address and
//! drops the session as FORWARD traffic). It survives the change when the programs would
//! admit its client's SYN to the server port: not an anti-spoof source, admitted by an
//! `in` rule's allow-list, as the kernel looks it up ([`MapPlan::admits`]); the returns
//! then ride that flow (or the pickup of sessions older than the filter).
use std::net::IpAddr;

use firewall_common::{AllowKey, Direction, PROTO_TCP};

use crate::{
    compile::{Ids, plan},
    policy::{Policy, Prefix, Service, to_addr},
};

/// The SSH session a command runs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SshSession {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}

impl SshSession {
    /// From `SSH_CONNECTION`, if the command runs under sshd.
    pub fn from_env() -> Option<SshSession> {
        SshSession::parse(&std::env::var("SSH_CONNECTION").ok()?)
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
    /// Whether the session goes to `policy`'s host address (either family).
    pub fn to_host(&self, policy: &Policy) -> bool {
        match self.server {
            IpAddr::V4(v4) => v4 == policy.address,
            IpAddr::V6(v6) => policy.address6 == Some(v6),
        }
    }
}

impl std::fmt::Display for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} port {} to {} port {}", self.client, self.client_port, self.server, self.server_port)
    }
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
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addrs.filter(|a| a.interface_name == iface).any(|a| {
        let Some(sock) = a.address else { return false };
        sock.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())) == Some(addr)
            || sock.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())) == Some(addr)
    })
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
        let (key, what) = match session.server {
            IpAddr::V4(_) => ("address", policy.address.to_string()),
            IpAddr::V6(_) => ("address6", policy.address6.map_or("none".into(), |a| a.to_string())),
        };
        return fail(
            format!("it reaches {} on {iface}, and the policy's [host] {key} is {what}", session.server),
            format!("set [host] {key} = \"{}\"", session.server),
        );
    }
    let client = Prefix { addr: session.client, len: if session.client.is_ipv4() { 32 } else { 128 } };
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
    if plan(policy, &ids).admits(&key).is_some() {
        return Ok(());
    }
    let serving: Vec<&str> = policy
        .rules
        .iter()
        .filter(|r| {
            r.direction == Direction::In
                && r.services.contains(&Service::Port { protocol: PROTO_TCP, port: session.server_port })
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

/// The guard as commands use it: nothing to check outside an SSH session, or with
/// `--force`.
pub fn guard(policy: &Policy, iface: Option<&str>, force: bool) -> Result<(), LockOut> {
    match SshSession::from_env() {
        Some(session) if !force => check(policy, iface, &session),
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
    fn ipv6_sessions_need_address6() {
        let err = check(&policy(""), Some("lo"), &session("::1 50000 ::1 22")).unwrap_err();
        assert!(
            err.to_string().contains("it reaches ::1 on lo, and the policy's [host] address6 is none"),
            "{err}"
        );
    }
}
