#!/bin/sh
# The seed's "tight" iptables policy, as the blog post that started the project gives it
# (docs/design.md, "The seed"), every rule in the seed's order, transcribed for the
# differential test (tests/tests/integration/differential.rs).
#
# Parameterised by the environment, as the seed's defines are. Every address and port
# must be given: an unset one stops the script before it touches a rule.
#
#   IPTABLES    the iptables program (default: iptables)
#   OURIP       this host's address
#   SSHIPS      addresses allowed to SSH in             (space separated)
#   DNSIPS      our DNS servers                         (space separated)
#   NTPIPS      our NTP servers                         (space separated)
#   MAILOUT     the smart host we send mail through
#   MAILIN      the relay allowed to deliver mail to us
#   OTHERIP     the one server we may SSH out to
#   REPOIPS     the distribution's repository or mirror (space separated)
#   WEBALLOWED  web servers we must reach               (space separated)
#   SERVICES    TCP ports we offer to anyone            (space separated)
#   SSH         our (non-standard) SSH port
#
# Netfilter is per network namespace: the test runs it as
#   ip netns exec SERVER sh tests/seed/tight-iptables.sh
#
# The tool is Debian 12's `iptables`, which is iptables-nft (1.8.9). The seed's
# `-m state --state` works there unchanged (nft_compat runs the xt_state match, and
# conntrack loads inside a fresh namespace), so it is kept; `-m conntrack --ctstate`
# would be the equivalent where it did not.
set -eu

IPTABLES=${IPTABLES:-iptables}
: "${OURIP:?OURIP is not set}"
: "${SSHIPS:?SSHIPS is not set}"
: "${DNSIPS:?DNSIPS is not set}"
: "${NTPIPS:?NTPIPS is not set}"
: "${MAILOUT:?MAILOUT is not set}"
: "${MAILIN:?MAILIN is not set}"
: "${OTHERIP:?OTHERIP is not set}"
: "${REPOIPS:?REPOIPS is not set}"
: "${WEBALLOWED:?WEBALLOWED is not set}"
: "${SERVICES:?SERVICES is not set}"
: "${SSH:?SSH is not set}"

# A clean slate: no rules, no counts (the filter table).
$IPTABLES -F
$IPTABLES -Z

# Nothing passes unless a rule below says so.
$IPTABLES -P INPUT DROP
$IPTABLES -P OUTPUT DROP
$IPTABLES -P FORWARD DROP

# Anti-spoofing: private, link-local, multicast, reserved, "this network" and the
# placeholder 1.1.1.1 as sources; the same and the broadcasts as destinations.
$IPTABLES -A INPUT -s 10.0.0.0/8 -j DROP
$IPTABLES -A INPUT -s 172.16.0.0/12 -j DROP
$IPTABLES -A INPUT -s 192.168.0.0/16 -j DROP
$IPTABLES -A INPUT -s 169.254.0.0/16 -j DROP
$IPTABLES -A INPUT -s 224.0.0.0/4 -j DROP
$IPTABLES -A INPUT -d 224.0.0.0/4 -j DROP
$IPTABLES -A INPUT -s 240.0.0.0/5 -j DROP
$IPTABLES -A INPUT -d 240.0.0.0/5 -j DROP
$IPTABLES -A INPUT -s 0.0.0.0/8 -j DROP
$IPTABLES -A INPUT -d 0.0.0.0/8 -j DROP
$IPTABLES -A INPUT -s 1.1.1.1 -j DROP
$IPTABLES -A INPUT -d 1.1.1.1 -j DROP
$IPTABLES -A INPUT -d 239.255.255.0/24 -j DROP
$IPTABLES -A INPUT -d 255.255.255.255 -j DROP

# Whatever conntrack calls INVALID, on every chain.
$IPTABLES -A INPUT -m state --state INVALID -j DROP
$IPTABLES -A FORWARD -m state --state INVALID -j DROP
$IPTABLES -A OUTPUT -m state --state INVALID -j DROP

# Loopback is always allowed.
$IPTABLES -A INPUT -i lo -j ACCEPT
$IPTABLES -A OUTPUT -o lo -j ACCEPT

# DNS to our servers, UDP and TCP; their answers come back as ESTABLISHED.
for SERVERS in $DNSIPS; do
    $IPTABLES -A OUTPUT -s "$OURIP" -p udp -m udp -d "$SERVERS" --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A INPUT -d "$OURIP" -p udp -m udp -s "$SERVERS" --sport 53 -m state --state ESTABLISHED -j ACCEPT
    $IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp -d "$SERVERS" --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A INPUT -d "$OURIP" -p tcp -m tcp -s "$SERVERS" --sport 53 -m state --state ESTABLISHED -j ACCEPT
done

# NTP to our time servers.
for SERVERS in $NTPIPS; do
    $IPTABLES -A OUTPUT -s "$OURIP" -p udp -m udp -d "$SERVERS" --dport 123 -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A INPUT -d "$OURIP" -p udp -m udp -s "$SERVERS" --sport 123 -m state --state ESTABLISHED -j ACCEPT
done

# HTTP to the distribution's repository or mirror.
for REPO in $REPOIPS; do
    $IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp -d "$REPO" --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A INPUT -s "$REPO" -p tcp -m tcp --sport 80 -d "$OURIP" -m state --state ESTABLISHED -j ACCEPT
done

# HTTP to the other web servers we need.
for SERVERS in $WEBALLOWED; do
    $IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp -d "$SERVERS" --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A INPUT -s "$SERVERS" -p tcp -m tcp --sport 80 -d "$OURIP" -m state --state ESTABLISHED -j ACCEPT
done

# SSH in, from the listed peers only, on our SSH port.
for IP in $SSHIPS; do
    $IPTABLES -A INPUT -s "$IP" -p tcp -m tcp -d "$OURIP" --dport "$SSH" -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A OUTPUT -d "$IP" -p tcp -m tcp -s "$OURIP" --sport "$SSH" -m state --state ESTABLISHED -j ACCEPT
done

# SSH out, to one other server (the seed does not recommend it).
$IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp -d "$OTHERIP" --dport 22 -m state --state NEW,ESTABLISHED -j ACCEPT
$IPTABLES -A INPUT -s "$OTHERIP" -p tcp -m tcp --sport 22 -d "$OURIP" -m state --state ESTABLISHED -j ACCEPT

# Mail. The seed's first choice sends mail to any server on port 25:
#
#   $IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp --dport 25 -m state --state NEW,ESTABLISHED -j ACCEPT
#   $IPTABLES -A INPUT -d "$OURIP" -p tcp -m tcp --sport 25 -m state --state ESTABLISHED -j ACCEPT
#
# It stays a comment: examples/tight.toml chose the seed's other choice, mail out through
# the smart host MAILOUT only (below), and with both in place the pair above would let
# mail go to any server, the smart-host restriction meaning nothing. The differential
# test probes exactly that: port 25 on a stranger must be closed under both filters.

# Mail in, from our relay only. (As in the seed, no return line: see docs/design.md, "Where this differs".)
$IPTABLES -A INPUT -d "$OURIP" -p tcp -m tcp --dport 25 -s "$MAILIN" -j ACCEPT

# Mail out, through our smart host only.
$IPTABLES -A OUTPUT -s "$OURIP" -p tcp -m tcp -d "$MAILOUT" --dport 25 -m state --state NEW,ESTABLISHED -j ACCEPT
$IPTABLES -A INPUT -d "$OURIP" -p tcp -m tcp -s "$MAILOUT" --sport 25 -m state --state ESTABLISHED -j ACCEPT

# The services we offer to anyone; only their answers go out.
for SERVICE in $SERVICES; do
    $IPTABLES -A INPUT -p tcp -m tcp -d "$OURIP" --dport "$SERVICE" -m state --state NEW,ESTABLISHED -j ACCEPT
    $IPTABLES -A OUTPUT -p tcp -m tcp -s "$OURIP" --sport "$SERVICE" -m state --state ESTABLISHED -j ACCEPT
done

# Ping from outside in, and the replies, each limited to 1/sec (burst 5, the default).
$IPTABLES -A INPUT -p icmp -m icmp -d "$OURIP" --icmp-type echo-request -m limit --limit 1/sec -j ACCEPT
$IPTABLES -A OUTPUT -s "$OURIP" -p icmp -m icmp --icmp-type echo-reply -m limit --limit 1/sec -j ACCEPT

# Ping from inside out, and the replies, the same limit.
$IPTABLES -A OUTPUT -s "$OURIP" -p icmp -m icmp --icmp-type echo-request -m limit --limit 1/sec -j ACCEPT
$IPTABLES -A INPUT -p icmp -m icmp -d "$OURIP" --icmp-type echo-reply -m limit --limit 1/sec -j ACCEPT

# Destination unreachable (type 3) both ways: code 4 is what path MTU discovery needs.
$IPTABLES -A INPUT -p icmp -m icmp -d "$OURIP" --icmp-type destination-unreachable -j ACCEPT
$IPTABLES -A OUTPUT -s "$OURIP" -p icmp -m icmp --icmp-type destination-unreachable -j ACCEPT

# The explicit drops at the end, so that `iptables -nvL` shows them counted.
$IPTABLES -A INPUT -j DROP
$IPTABLES -A OUTPUT -j DROP
$IPTABLES -A FORWARD -j DROP
