//! A real boot: systemd as PID 1 in a container booted from this machine's own image
//! (tests/src/guest.rs), `dist/firewall@.service` enabled on its interface as a package
//! enables it, systemd-networkd asking for a lease, and dnsmasq serving DHCP on the other
//! end of the link.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration boot:: -- --nocapture`.
use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use tests::{
    daemons::{self, in_ns},
    guest::{Guest, Install, stdout_of},
    lab::{Lab, Listing, Outcome, run_in},
    require_root,
};

/// The DHCP server's end of the link, and the one address it leases: the guest's.
pub(super) const WORLD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(super) const GUEST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const LEASE_WITHIN: Duration = Duration::from_secs(30);

/// The guest's policy: ping from the world's end, and `extra` rules.
pub(super) fn policy(extra: &str) -> String {
    format!(
        "[host]\ninterface = \"host0\"\naddress = \"{GUEST}\"\n\n\
         [[rule]]\nname = \"ping-in\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\n\
         icmp_type = \"echo-request\"\npeers = [\"{WORLD}\"]\n{extra}"
    )
}

/// A rule opening port 80 to the world's end.
pub(super) fn web_rule() -> String {
    format!(
        "\n[[rule]]\nname = \"web-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 80\npeers = [\"{WORLD}\"]\n"
    )
}

/// A TCP connection from the world's end to `port` of the guest, where nothing listens:
/// refused when the packets reach its TCP, blocked when the filter drops them.
pub(super) fn connect(lab: &Lab, port: u16) -> Outcome {
    let to = SocketAddrV4::new(GUEST, port).into();
    match run_in(&lab.client, || TcpStream::connect_timeout(&to, Duration::from_secs(2))) {
        Ok(_) => Outcome::Open,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(_) => Outcome::Blocked,
    }
}

pub(super) fn pinged(lab: &Lab) -> bool {
    let out = in_ns(&lab.client, "ping").args(["-n", "-c", "1", "-W", "2"]).arg(GUEST.to_string()).output();
    out.expect("running ping").status.success()
}

/// `systemctl show -P PROPERTY UNIT` in the guest, a number.
fn timestamp(guest: &Guest, unit: &str, property: &str) -> u64 {
    let out = guest.run(&["systemctl", "show", "-P", property, unit]);
    stdout_of(&out).parse().unwrap_or_else(|_| panic!("{unit} {property}: {:?}", stdout_of(&out)))
}

/// Everything systemd says about the boot's failures, and the firewall's journal.
pub(super) fn boot_report(guest: &Guest) -> String {
    let failed = stdout_of(&guest.run(&["systemctl", "--failed", "--no-legend"]));
    let journal = stdout_of(&guest.run(&["journalctl", "-b", "-u", "firewall@host0", "--no-pager"]));
    format!("failed units: {failed}\nfirewall@host0's journal:\n{journal}")
}

/// Waits for the guest's lease, and says whether it came.
pub(super) fn leased(guest: &Guest) -> bool {
    let started = Instant::now();
    while started.elapsed() < LEASE_WITHIN {
        let addrs = stdout_of(&guest.run(&["ip", "-4", "-o", "addr", "show", "dev", "host0"]));
        if addrs.contains(&format!("{GUEST}/24")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

pub(super) fn guest_listing(guest: &Guest) -> Listing {
    let out = guest.run(&["firewall", "list", "--json", "--iface", "host0"]);
    assert!(out.status.success(), "firewall list in the guest: {}", String::from_utf8_lossy(&out.stderr));
    Listing(serde_json::from_slice(&out.stdout).expect("list --json is JSON"))
}

#[test]
fn the_unit_filters_from_boot_lets_the_lease_through_reloads_stops_and_boots_a_typo_on_the_last_good_policy()
{
    require_root();
    let lab = Lab::new("boot");
    let mut guest = Guest::new(&lab, "fwboot", Install::FromSource);
    guest.write("/etc/firewall/host0.toml", &policy(""));
    guest.enable("firewall@host0.service", "/etc/systemd/system/firewall@.service");
    guest.write("/etc/systemd/network/80-host0.network", "[Match]\nName=host0\n\n[Network]\nDHCP=ipv4\n");
    guest.enable("systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service");
    guest.boot();
    let range = format!("{GUEST},{GUEST}");
    let _dhcp = daemons::dhcp_server_on(&lab, &guest.outer_if(), WORLD, &range);
    guest.wait_booted();
    let active = stdout_of(&guest.run(&["systemctl", "is-active", "firewall@host0"]));
    assert_eq!(active, "active", "{}", boot_report(&guest));

    // The filter was in place before the units that configure the network ran.
    let filtered = timestamp(&guest, "firewall@host0.service", "ActiveEnterTimestampMonotonic");
    let pre = timestamp(&guest, "network-pre.target", "ActiveEnterTimestampMonotonic");
    let networkd = timestamp(&guest, "systemd-networkd.service", "ExecMainStartTimestampMonotonic");
    assert!(
        filtered > 0 && filtered <= pre && pre <= networkd,
        "firewall@host0 active at {filtered} µs, network-pre.target at {pre}, networkd started at {networkd}"
    );
    // The lease came through the filter, on its `dhcp` lines.
    assert!(leased(&guest), "no lease for host0; {}", boot_report(&guest));
    let listing = guest_listing(&guest);
    assert!(listing.packets("INPUT", "dhcp") > 0 && listing.packets("OUTPUT", "dhcp") > 0, "{:#}", listing.0);

    // The policy's verdicts hold: ping passes, port 80 is closed by the filter.
    assert!(pinged(&lab), "ping-in");
    assert_eq!(connect(&lab, 80), Outcome::Blocked, "port 80 before the edit");

    // `systemctl reload` applies an edit.
    let edited = policy(&web_rule());
    guest.write("/etc/firewall/host0.toml", &edited);
    let out = guest.run(&["systemctl", "reload", "firewall@host0"]);
    assert!(out.status.success(), "systemctl reload: {}", boot_report(&guest));
    assert_eq!(connect(&lab, 80), Outcome::Refused, "port 80 after the edit reaches the guest's TCP");
    assert_eq!(connect(&lab, 81), Outcome::Blocked, "port 81 stays closed");
    let kept = std::fs::read_to_string(guest.path("/var/lib/firewall/host0.toml")).unwrap_or_default();
    assert_eq!(kept, edited, "the reloaded policy is kept as the last good one");

    // `systemctl stop` takes the filter off.
    let out = guest.run(&["systemctl", "stop", "firewall@host0"]);
    assert!(out.status.success(), "systemctl stop: {}", boot_report(&guest));
    let link = stdout_of(&guest.run(&["ip", "link", "show", "host0"]));
    assert!(tests::lab::xdp_lines(&link).is_empty(), "XDP still attached: {link}");
    assert_eq!(connect(&lab, 81), Outcome::Refused, "no filter: port 81 reaches the guest's TCP");

    // The next boot meets a typo: the last good policy goes up, and the unit fails,
    // naming the error.
    guest.shut_down();
    guest.write("/etc/firewall/host0.toml", &edited.replace("port = 80", "port = 80000"));
    guest.boot();
    // A new link, a new outer end: its DHCP server anew.
    let _dhcp = daemons::dhcp_server_on(&lab, &guest.outer_if(), WORLD, &range);
    assert_eq!(guest.wait_booted(), "degraded", "{}", boot_report(&guest));
    let active = stdout_of(&guest.run(&["systemctl", "is-active", "firewall@host0"]));
    assert_eq!(active, "failed", "{}", boot_report(&guest));
    let report = boot_report(&guest);
    assert!(
        report.contains("/etc/firewall/host0.toml:")
            && report.contains("80000")
            && report.contains(
                "in force instead: the last policy that applied cleanly, /var/lib/firewall/host0.toml"
            ),
        "{report}"
    );
    assert!(leased(&guest), "no lease on the last good policy; {report}");
    assert!(pinged(&lab), "ping-in on the last good policy");
    assert_eq!(connect(&lab, 80), Outcome::Refused, "web-in of the last good policy");
    assert_eq!(connect(&lab, 81), Outcome::Blocked, "port 81 closed by the last good policy");
}
