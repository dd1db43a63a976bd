//! The chain engine: the seed's rules in the seed's order, for both directions and both
//! IP families (IPv6 rides the same maps: see firewall_common::Addr).
//!
//! | step | seed | counted on |
//! | --- | --- | --- |
//! | the link's own protocols pass (ARP, LLDP, 802.1X, LACP, 802.3 LLC) | iptables never sees them | `non-ip` |
//! | any other ethertype drops (MPLS, PPPoE, …) | (iptables never sees them either) | `ethertype` |
//! | IPv6 drops, unless the policy has `address6` | (ip6tables left open) | `ipv6` |
//! | malformed headers drop, and a third VLAN tag | `--state INVALID` | `invalid` |
//! | a tracked flow passes (checked first: the fast path) | `--state ESTABLISHED` | the rule's lines |
//! | a blocked peer drops, both ways, until its deadline (`firewall block`), whatever it sends | fail2ban's `-I INPUT 1 -s … -j DROP` | the entry's own lines |
//! | the DHCP client's exchange (`[host] dhcp`): UDP 67 → 68 in, 68 → 67 out (DHCPv6: 547 → 546, 546 → 547), any address, not to or from a blocked peer | iptables never sees dhclient's packet sockets | `dhcp` |
//! | anti-spoof sources (ingress), but for the DHCP client's exchange, and discovery from a link-local or unspecified source | `-s … -j DROP` | the entry's own line |
//! | IPv6 neighbour and multicast listener discovery pass; packet-too-big to/from us passes | (ip6tables' usual first lines, RFC 4890) | `icmpv6-nd`, `icmpv6-ptb` |
//! | anti-spoof destinations (ingress) | `-d … -j DROP` | the entry's own line |
//! | not one of our addresses (ingress) → FORWARD; not our source (egress) | `-d $OURIP`, `-s $OURIP` | FORWARD / `antispoof-source` |
//! | a later fragment whose first passed (see [`fragments`]) passes | (netfilter reassembles first) | the first's line |
//! | other later fragments, tiny or absurd ones, bad TCP flags drop; TCP from or to port 0, UDP to port 0 drop on `invalid` | `--state INVALID` | `fragment-orphan`, `invalid-fragment`, `invalid-tcp-flags`, `invalid` |
//! | our service answering a session older than the filter (egress) | conntrack's pickup | the rule's `Established` line |
//! | an allow-list entry admits, within its limit (an ICMP error, if the rule says `related`, only about a tracked flow; with `[conntrack] tcp_loose = false`, TCP only with a bare SYN) | `NEW,ESTABLISHED -j ACCEPT`, `-m limit`, `RELATED`, `! --syn … NEW -j DROP` | the rule's `New` line |
//! | …and, for a rule with `uids` (outbound), only from a listed user's socket | `-m owner --uid-owner` | the rule's `New` line, or `policy` |
//! | …and within its source's connections and rate (`per_source`, inbound rules): with its connections open already, or over its rate, the new flow drops, and over the rate the source may be blocked (see [`per_source`]) | `-m connlimit --connlimit-above`, `-m recent --update --hitcount`, `-m hashlimit --hashlimit-mode srcip` | `source-limit` |
//! | …and, for a rule with `returns = false`, without starting a flow: nothing comes back through it | an ACCEPT with no return line | the rule's `New` line |
//! | …but a trap (`trap`, inbound rules) admits nothing: the packet drops, and its source is blocked (see [`per_source`]) | `-m recent --set` on a trap port, then `--rcheck -j DROP` | the trap's `New` line, then `source-limit` |
//! | everything else drops | `-P DROP` | `policy` |
//!
//! A block means nothing passes to or from the peer but what the link needs: the link's
//! own protocols (blocks are IP prefixes), and discovery from the blocked host's
//! link-local address (unless `fe80::/10` itself is blocked). Discovery and packet-too-big
//! from or to its address are blocked like the rest. Discovery comes from the link's own
//! addresses (`fe80::/10`, `::`), which the IPv6 anti-spoof defaults list precisely to
//! keep them out of everything else, so it skips that list; from any other source it meets
//! the list as everything does. The host's own discovery leaves from its link-local
//! address, so it passes before the egress check of our source.
//!
//! In audit mode (`--audit`) every line counts as above and what would drop passes. While
//! `drops` or `serve --log-drops` listens, drops also send events, rate-limited here in the
//! kernel, and so do the flows a rule with `log` admits.
use aya_ebpf::{EbpfContext, maps::lpm_trie::Key};
use firewall_common::{
    ALLOW_CONNECTIONS, ALLOW_KEY_SERVICE_BITS, ALLOW_LIMITED, ALLOW_LOG, ALLOW_ONE_WAY, ALLOW_OWNER,
    ALLOW_PER_SOURCE, ALLOW_RELATED, ALLOW_TRAP, ANY_PEER, Addr, AllowKey, AllowValue, AntispoofList,
    Builtin, CELL_ASK, CELL_NONE, CONFIG_AUDIT, CONFIG_DHCP, CONFIG_HAS_BLOCKS, CONFIG_HAS_PREFIXES,
    CONFIG_HAS_RANGES, CONFIG_IPV6, CONFIG_LEARN_DNS, CONFIG_LOG_DROPS, CONFIG_MORE_ADDRESSES,
    CONFIG_NEVER_SET, CONFIG_READY, CONFIG_TCP_STRICT, COUNTER_LOGGED, Chain, Config, DHCP_CLIENT_PORT,
    DHCP_SERVER_PORT, DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT, DNS_PORT, Direction, DropEvent, FlowKey,
    ICMP_DEST_UNREACHABLE, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, ICMPV6_DEST_UNREACHABLE, ICMPV6_MLD,
    ICMPV6_ND_FIRST, ICMPV6_ND_LAST, ICMPV6_PACKET_TOO_BIG, ICMPV6_PARAMETER_PROBLEM, ICMPV6_TIME_EXCEEDED,
    LOG_BUCKET, Line, MAX_LIST_NESTING, OFFENDER_SLOT, PROTO_ICMPV6, PROTO_TCP, RuleUid, SKIP_ANYONE,
    SKIP_PEERS, antispoof_cell, block_counter, builtin_counter, is_v4_mapped, listed_len, listed_slot,
    port_interval_slot, rule_counter, service_skip_slot,
};

use crate::{
    conntrack, dns, fragments,
    maps::{
        ALLOW_EXACT, ALLOW_PREFIX, ANTISPOOF_CELLS, ANTISPOOF_DST, ANTISPOOF_SRC, BLOCK_LISTS, BLOCKLIST,
        CONFIG, COUNTERS, DROP_EVENTS, HOST_ADDRESSES, LIST_DEADLINES, PORT_INTERVALS, RULE_UIDS, SCRATCH,
        SERVICE_SKIPS,
    },
    parse::{
        Fragment, Frame, Ip, L3, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, copy_head, parse_l3, parse_l4,
        parse_quoted, tcp_flags_valid,
    },
    per_source, token_bucket,
};

pub enum Action {
    Pass,
    Drop,
    /// A DNS answer held for `firewall serve`, which hands it back (see crate::dns).
    Held,
    /// A DNS answer `serve` handed back, on its second pass: counted on the first.
    Released,
}

/// Judges one frame travelling `direction` and counts it on the line that decided; in
/// audit mode a drop is counted and passes.
#[inline(always)]
pub fn filter<F: Frame + EbpfContext>(frame: &F, direction: Direction) -> Action {
    // Until `up` has filled every map, pass everything and count nothing: a filter
    // half-loaded must not cut the host off.
    // Read through the map value, not copied: the TC program's 512-byte stack has no room
    // left for a 96-byte copy (the verifier test loads both programs, so a map pointer
    // LLVM did arithmetic on, as it once did, would fail there).
    let Some(config) = CONFIG.get(0) else {
        return Action::Pass;
    };
    if config.flags & CONFIG_READY == 0 {
        return Action::Pass;
    }
    let (action, marked) = walk(frame, direction, config);
    if let Action::Released = action {
        return Action::Pass;
    }
    let counter = marked & !COUNTER_LOGGED;
    // Counted before the drop's event, not after: the verifier then meets the event's
    // code once for all the lines that drop, not once for each (it tells the lines
    // apart for the counter's lookup: 6,000 to 8,000 of its instructions with the
    // link layer's lines).
    if let Some(line) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: this CPU's slot of a per-CPU array; nothing else writes it meanwhile.
        unsafe {
            (*line).packets += 1;
            (*line).bytes += frame.len() as u64;
        }
    }
    // Every drop is told while a listener asks, and the flows a rule with `log` admits.
    if !matches!(action, Action::Drop) && marked & COUNTER_LOGGED == 0 {
        return action;
    }
    if config.flags & CONFIG_LOG_DROPS != 0 && token_bucket::take(LOG_BUCKET, conntrack::now()) {
        drop_event(frame, direction, counter);
    }
    if let Action::Pass = action {
        return Action::Pass;
    }
    if config.flags & CONFIG_AUDIT != 0 { Action::Pass } else { Action::Drop }
}

#[inline(always)]
fn drop(chain: Chain, line: Builtin) -> (Action, u32) {
    (Action::Drop, builtin_counter(chain, line))
}

/// One drop, for `firewall drops` and `serve --log-drops`: the line it was counted on and
/// the frame's first bytes, which user space decodes, as a [`DropEvent`] written straight
/// into the ring. The head is copied by a helper, not read through the parser: so the
/// event costs the verifier one helper call, not a second walk of every header layout.
/// One code path for both programs: [`Frame::copy_head`] is the only difference.
#[inline(always)]
fn drop_event<F: Frame + EbpfContext>(frame: &F, direction: Direction, counter: u32) {
    // A full ring (the listener behind) loses the event, as a sample may be lost.
    let Some(mut entry) = DROP_EVENTS.reserve::<DropEvent>(0) else {
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at the reserved record, ours alone until submitted or
    // discarded, and the size of a DropEvent; fields are written through the pointer, no
    // reference to the uninitialised record is made. The head bytes past `head_len` stay as
    // the ring had them: user space reads `head_len` bytes only.
    let copied = unsafe {
        (*event).counter = counter;
        (*event).len = frame.len();
        (*event).direction = direction as u8;
        (*event)._pad = 0;
        copy_head(frame, core::ptr::addr_of_mut!((*event).head))
    };
    let Some(len) = copied else {
        entry.discard(0);
        return;
    };
    // SAFETY: as above; every field is written now.
    unsafe { (*event).head_len = len as u16 };
    entry.submit(0);
}

/// One frame: its IP header read, then judged; a first fragment that passes makes way
/// for the rest of its datagram.
#[inline(always)]
fn walk<F: Frame + EbpfContext>(frame: &F, direction: Direction, config: &Config) -> (Action, u32) {
    let chain = Chain::of(direction);
    let mut ip = match parse_l3(frame, config.flags & CONFIG_IPV6 != 0) {
        Ok(L3::Ip(ip)) => ip,
        Ok(L3::NonIp) => return (Action::Pass, builtin_counter(chain, Builtin::NonIp)),
        Ok(L3::OtherEthertype) => return drop(chain, Builtin::OtherEthertype),
        Ok(L3::TooDeep) => return drop(chain, Builtin::Invalid),
        Ok(L3::Ipv6Off) => return drop(chain, Builtin::Ipv6),
        Err(_) => return drop(chain, Builtin::Invalid),
    };
    // A 0 the verifier cannot see through (see `Ip::more`).
    ip.more |= ((config.flags & CONFIG_NEVER_SET) >> 31) as u8;
    let verdict = judge(frame, &ip, direction, config);
    if let (Action::Pass, counter) = verdict
        && let Fragment::Headed = ip.fragment
        && ip.more != 0
    {
        // Its later fragments pass on its line, and are not told: the flow was.
        fragments::first_passed(&ip, direction, counter & !COUNTER_LOGGED, config);
    }
    verdict
}

/// The seed's chains, in order, for one IP packet.
///
/// The clock is read where a verdict needs it (a flow's timeout, a block's deadline, a
/// rate), not once for every packet: the drops that need none (anti-spoof, INVALID, the
/// policy) are spared the helper call.
#[inline(always)]
fn judge<F: Frame + EbpfContext>(frame: &F, ip: &Ip, direction: Direction, config: &Config) -> (Action, u32) {
    let chain = Chain::of(direction);
    // A later fragment has no headers to judge it by, and an absurd one belongs to no
    // datagram: neither goes the long way. A block stops them, as it stops everything;
    // then a later fragment follows its first (see `fragments`). Decided here, the
    // verifier walks their short way once for each header layout, not the chains.
    if !matches!(ip.fragment, Fragment::Headed) {
        let peer = match direction {
            Direction::In => &ip.src,
            Direction::Out => &ip.dst,
        };
        if config.flags & CONFIG_HAS_BLOCKS != 0
            && let Some(counter) = blocked(peer, direction)
        {
            return (Action::Drop, counter);
        }
        return match ip.fragment {
            Fragment::Later { offset } => fragments::later(ip, offset, direction, chain),
            _ => drop(chain, Builtin::InvalidFragment),
        };
    }
    // The transport header, read once; what is wrong with it counts only once the lists
    // have had their say, as in the seed's order. And the flow an ICMP error is about,
    // read now although only a `related` rule asks: the parse ends here, so no packet
    // offset outlives it, and the verifier's paths through the many header layouts
    // converge before the chain instead of each walking it whole.
    let l4 = parse_l4(frame, ip).ok();
    let related = match l4 {
        Some(L4::Icmp { kind, .. }) if is_icmp_error(ip.v6, kind) => related(frame, ip, direction, config),
        _ => false,
    };
    // Whether the local address is the first of its family; `ours` completes it below.
    let (first, peer) = match (direction, ip.v6) {
        (Direction::In, false) => (ip.dst == config.address, ip.src),
        (Direction::In, true) => (ip.dst == config.address6, ip.src),
        (Direction::Out, false) => (ip.src == config.address, ip.dst),
        (Direction::Out, true) => (ip.src == config.address6, ip.dst),
    };
    // What IPv6 itself needs, and the DHCP client's exchange, decided on a branch of its
    // own: neither has a flow, so the fast path cannot take them, and they meet the
    // blocklist as the long way below would, in its order. Inbound, discovery meets the
    // anti-spoof sources too, but from the link's own addresses; DHCP skips them (a server
    // may have a private address the lists name, and a client without a lease speaks from
    // 0.0.0.0). Both pass before the checks of our address, which discovery's link-local
    // and multicast ends and DHCP's broadcasts are not. Decided in line, after the
    // blocklist, discovery's verdicts cost the verifier 3,000 to 5,000 more instructions.
    // Packet-too-big to another of the host's addresses is told from one to a stranger
    // by `ours`, just below.
    let exempt = match l4 {
        Some(L4::Icmp { kind, .. }) if ip.v6 => icmpv6_infrastructure(
            ip,
            kind,
            kind == ICMPV6_PACKET_TOO_BIG && (first || config.flags & CONFIG_MORE_ADDRESSES != 0),
        ),
        Some(L4::Udp { src_port, dst_port }) if config.flags & CONFIG_DHCP != 0 => {
            dhcp_client(ip.v6, direction, src_port, dst_port)
        }
        _ => None,
    };
    let ours = ours(first, ip, direction, config);
    if let Some(line) = exempt
        && (line != Builtin::PacketTooBig || ours)
    {
        if config.flags & CONFIG_HAS_BLOCKS != 0
            && let Some(counter) = blocked(&peer, direction)
        {
            return (Action::Drop, counter);
        }
        if direction == Direction::In
            && line != Builtin::Dhcp
            && !(line == Builtin::NeighbourDiscovery && from_the_link(&ip.src))
            && let Some(counter) = antispoof(AntispoofList::Sources, &ip.src, ip.v6, Direction::In)
        {
            return (Action::Drop, counter);
        }
        return (Action::Pass, builtin_counter(chain, line));
    }

    // The fast path: most packets belong to a flow a rule already admitted, and skip the
    // lists. A flow exists only with a peer the anti-spoof sources let through (inbound
    // flows met them, outbound ones to peers they name are not tracked), and a reload
    // ends the flows of peers they come to list, so no verdict changes; what is
    // malformed still goes the long way, to be counted where it belongs. A first fragment
    // of a flow's datagram is the flow's, as its whole datagram would be.
    if ours
        && let Some(l4) = &l4
        && let Some(counter) = established(ip, peer, l4, direction, config)
    {
        // `[dns] learn`: an answer of the host's resolvers, whole, is held for `serve`.
        if direction == Direction::In
            && config.flags & CONFIG_LEARN_DNS != 0
            && let L4::Udp { src_port: DNS_PORT, .. } = *l4
            && ip.more == 0
            && let Some(flow) = conntrack::flow_key(direction, peer, ip.protocol, l4)
        {
            return (dns::hold(frame, &flow, conntrack::now()), counter);
        }
        return (Action::Pass, counter);
    }

    // The long way, in the seed's order, after the administrator's blocks: no flow is
    // left with a peer `firewall block` names (it ends them), and none can start.
    if config.flags & CONFIG_HAS_BLOCKS != 0
        && let Some(counter) = blocked(&peer, direction)
    {
        return (Action::Drop, counter);
    }
    let chain = match direction {
        Direction::In => {
            if let Some(counter) = antispoof(AntispoofList::Sources, &ip.src, ip.v6, Direction::In) {
                return (Action::Drop, counter);
            }
            // Our own address is in no destination list (the policy is refused if it is).
            if !ours
                && let Some(counter) = antispoof(AntispoofList::Destinations, &ip.dst, ip.v6, Direction::In)
            {
                return (Action::Drop, counter);
            }
            if ours { Chain::Input } else { Chain::Forward }
        }
        Direction::Out => {
            if !ours {
                return drop(Chain::Output, Builtin::SpoofedSource);
            }
            Chain::Output
        }
    };

    let Some(l4) = l4 else {
        // A first fragment too short for its transport header (RFC 1858's tiny
        // fragments) is the fragments' fault, not the header's.
        return drop(chain, if ip.more != 0 { Builtin::InvalidFragment } else { Builtin::Invalid });
    };
    if let L4::Tcp { flags, .. } = l4
        && !tcp_flags_valid(flags)
    {
        return drop(chain, Builtin::InvalidTcpFlags);
    }
    // Port 0 is no service's and no client's: a scanner's probe, or a forger's. (A UDP
    // datagram may come from it, RFC 768's "no reply wanted".)
    if let L4::Tcp { src_port: 0, .. } | L4::Tcp { dst_port: 0, .. } | L4::Udp { dst_port: 0, .. } = l4 {
        return drop(chain, Builtin::Invalid);
    }
    if chain == Chain::Forward {
        return drop(chain, Builtin::Policy);
    }
    let flow = conntrack::flow_key(direction, peer, ip.protocol, &l4);

    // Then the allow-lists: may this packet open a flow?
    let port = match l4 {
        L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => dst_port,
        L4::Icmp { kind, .. } => kind as u16,
        L4::Other => return drop(chain, Builtin::Policy),
    };
    let key = allow_key(direction, ip.protocol, port, peer, config);
    let Some(rule) = allowed(&key, direction, config) else {
        if let Some(counter) = picked_up(direction, &l4, peer, flow.as_ref(), config) {
            return (Action::Pass, counter);
        }
        return drop(chain, Builtin::Policy);
    };
    // `uids` (outbound rules): only the packets of a listed user's sockets.
    if direction == Direction::Out
        && rule.flags & ALLOW_OWNER != 0
        && RULE_UIDS.get_ptr(&RuleUid { rule: rule.rule, uid: frame.socket_uid() }).is_none()
    {
        return drop(chain, Builtin::Policy);
    }
    // `[conntrack] tcp_loose = false`: a flow opens with a bare SYN only.
    if let L4::Tcp { flags, .. } = l4
        && config.flags & CONFIG_TCP_STRICT != 0
        && flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN
    {
        return drop(chain, Builtin::Policy);
    }
    // An ICMP error for a rule that asks: only about a flow we track (RELATED).
    if rule.flags & ALLOW_RELATED != 0 && !related {
        return drop(chain, Builtin::Policy);
    }
    // With its connections open already, or over its source's rate, a new flow drops,
    // and its source may be blocked for the rate (`per_source`: inbound rules alone have
    // one). Asked before the rule's own limit, so one source over its rate takes no token
    // from the others. A trap admits nothing, and blocks its source: counted on its line.
    if direction == Direction::In
        && rule.flags & (ALLOW_PER_SOURCE | ALLOW_CONNECTIONS | ALLOW_TRAP) != 0
        && !per_source::admit(&rule, &peer, ip.v6, flow.as_ref(), conntrack::now())
    {
        if rule.flags & ALLOW_TRAP != 0 {
            return (Action::Drop, rule_counter(rule.rule, Line::New));
        }
        return drop(chain, Builtin::SourceLimit);
    }
    // Over its limit, a packet falls through to the policy, as with iptables' `-m limit`.
    if rule.flags & ALLOW_LIMITED != 0 && !token_bucket::take(rule.rule, conntrack::now()) {
        return drop(chain, Builtin::Policy);
    }
    // A flow to a peer the anti-spoof sources name is not tracked: its returns meet that
    // list, as in the seed, where the anti-spoof lines come before the ESTABLISHED ones
    // (tracked, they would ride the fast path past it). One trie lookup a new outbound
    // flow; inbound ones met the list already. A rule with `returns = false` tracks none:
    // nothing comes back through it.
    if let Some(key) = &flow
        && rule.flags & ALLOW_ONE_WAY == 0
        && (direction == Direction::In || !spoofed_peer(&peer, ip.v6, direction))
    {
        conntrack::track(key, direction, direction, rule.rule, &l4, conntrack::now(), config);
    }
    // A rule with `log` has its admits told (see `filter`).
    let logged = if rule.flags & ALLOW_LOG != 0 { COUNTER_LOGGED } else { 0 };
    (Action::Pass, rule_counter(rule.rule, Line::New) | logged)
}

/// Whether the packet is ours: its local address is one of the host's. `first` says
/// whether it is the first of its family, in `CONFIG` (compared in `judge`: one comparison,
/// all a host with one address of each family pays, as before there could be more); if
/// not, and the policy names more than one of some family, whether `HOST_ADDRESSES` holds
/// it. Asked once, after the branch of what IPv6 needs and the DHCP client's has been
/// decided but before it is taken: asked where `first` is compared, or for packet-too-big
/// alone inside that branch, the lookup cost the verifier 11,000 to 12,000 more
/// instructions a program (its paths through the headers no longer converged); here, a
/// few hundred.
#[inline(always)]
fn ours(first: bool, ip: &Ip, direction: Direction, config: &Config) -> bool {
    let local = match direction {
        Direction::In => &ip.dst,
        Direction::Out => &ip.src,
    };
    first || config.flags & CONFIG_MORE_ADDRESSES != 0 && host_address(local, direction)
}

/// Whether `HOST_ADDRESSES` holds `addr`, its key written in this program's scratch slot
/// (on the stack, with what lives across the lookup, it pushed the egress program past the
/// 512 bytes LLVM allows a frame; as a subprogram, its spills did the same).
#[inline(always)]
fn host_address(addr: &Addr, direction: Direction) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(direction as u32) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile.
    unsafe {
        (*scratch).address = *addr;
        HOST_ADDRESSES.get_ptr(&(*scratch).address).is_some()
    }
}

/// The counter of the block `peer` is inside, if one is: [`blocked_line`]'s answer, the
/// peer's key handed over in the scratch slot (the stack has no room for it at every
/// call site, and a global function takes scalars alone).
#[inline(always)]
fn blocked(peer: &Addr, direction: Direction) -> Option<u32> {
    let scratch = SCRATCH.get_ptr_mut(direction as u32)?;
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile.
    unsafe { (*scratch).peer_key = Key::new(128, *peer) };
    match blocked_line(direction as u32) {
        NOT_BLOCKED => None,
        line => Some(line),
    }
}

/// [`blocked_line`]'s answer for a peer no block holds.
const NOT_BLOCKED: u32 = u32::MAX;

/// The line of the block holding the peer in the scratch slot of `direction`, or
/// [`NOT_BLOCKED`]. First `firewall block`'s entry, unless it has expired (user space
/// keeps wider entries from outliving the narrower ones inside them, so the most specific
/// match decides): the entry's own, or for an offender a `per_source` limit blocked (a
/// single address, so never wider than another entry), the chain's `source-limit` line.
/// Then the named lists': the list's, unless it has expired, when the trie is asked again
/// one bit wider than the entry that matched (a live list may hold a wider prefix), up to
/// [`MAX_LIST_NESTING`] times. The two are tries of their own, so an expired block never
/// hides a list's.
///
/// Global (its symbol exported), so that the verifier checks it once rather than on every
/// path to each of its three callers.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn blocked_line(direction: u32) -> u32 {
    let direction = if direction == Direction::In as u32 { Direction::In } else { Direction::Out };
    let now = conntrack::now();
    let Some(scratch) = SCRATCH.get_ptr_mut(direction as u32) else {
        return NOT_BLOCKED;
    };
    // SAFETY: as `blocked`'s; a map value pointer is valid for the program's run.
    let key = unsafe { &(*scratch).peer_key };
    if let Some(entry) = BLOCKLIST.get(key)
        && (entry.deadline_ns == 0 || now < entry.deadline_ns)
    {
        if entry.slot == OFFENDER_SLOT {
            return builtin_counter(Chain::of(direction), Builtin::SourceLimit);
        }
        return block_counter(entry.slot, direction);
    }
    for _ in 0..MAX_LIST_NESTING {
        // SAFETY: as above; the key is this program's own scratch.
        let Some(value) = BLOCK_LISTS.get(unsafe { &(*scratch).peer_key }) else {
            return NOT_BLOCKED;
        };
        let slot = listed_slot(*value);
        match LIST_DEADLINES.get(slot) {
            Some(&deadline) if deadline != 0 && now >= deadline => {}
            _ => return block_counter(slot, direction),
        }
        // Expired: a wider entry, of a list that outlives this one, may hold the peer.
        let len = listed_len(*value);
        if len == 0 {
            return NOT_BLOCKED;
        }
        // SAFETY: as above.
        unsafe { (*scratch).peer_key.prefix_len = len - 1 };
    }
    NOT_BLOCKED
}

/// Whether the anti-spoof source list names `peer`: no packet from it passes.
#[inline(always)]
fn spoofed_peer(peer: &Addr, v6: bool, direction: Direction) -> bool {
    antispoof(AntispoofList::Sources, peer, v6, direction).is_some()
}

/// The counter of the entry of `list` that holds `addr` (of the family `v6`), if one
/// does: [`antispoof_line`]'s answer, the address handed over in `direction`'s scratch
/// slot, as to [`blocked_line`].
#[inline(always)]
fn antispoof(list: AntispoofList, addr: &Addr, v6: bool, direction: Direction) -> Option<u32> {
    let scratch = SCRATCH.get_ptr_mut(direction as u32)?;
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile.
    unsafe { (*scratch).peer_key = Key::new(128, *addr) };
    match antispoof_line(list as u32, u32::from(v6), direction as u32) {
        CELL_NONE => None,
        counter => Some(counter),
    }
}

/// The counter of the entry of the anti-spoof list `list` that holds the address in the
/// scratch slot of `direction` (of IPv6 if `v6`), or `CELL_NONE`: the answer of the
/// address's cell in `ANTISPOOF_CELLS`, one array read, unless the cell has an entry
/// inside it, when the list's trie decides.
///
/// Global (its symbol exported), so that the verifier checks it once. Inlined, the cell's
/// answer taken at once had the verifier walk the rest of the chain again on each way on
/// (no entry; the trie's answer), 6,000 instructions more a program.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn antispoof_line(list: u32, v6: u32, direction: u32) -> u32 {
    let direction = if direction == Direction::In as u32 { Direction::In } else { Direction::Out };
    let list = if list == AntispoofList::Sources as u32 {
        AntispoofList::Sources
    } else {
        AntispoofList::Destinations
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(direction as u32) else {
        return CELL_NONE;
    };
    // SAFETY: as `antispoof`'s; a map value pointer is valid for the program's run.
    let key = unsafe { &(*scratch).peer_key };
    // An IPv6 address's first byte; an IPv4 one's first octet, the mapped address's 13th.
    let byte = if v6 != 0 { key.data[0] } else { key.data[12] };
    match ANTISPOOF_CELLS.get(antispoof_cell(list, v6 != 0, byte)).copied() {
        Some(CELL_ASK) | None => {
            let trie = match list {
                AntispoofList::Sources => &ANTISPOOF_SRC,
                AntispoofList::Destinations => &ANTISPOOF_DST,
            };
            trie.get(key).copied().unwrap_or(CELL_NONE)
        }
        Some(answer) => answer,
    }
}

/// Whether `src` is one of the addresses discovery comes from: link-local (`fe80::/10`) or
/// unspecified (`::`, duplicate address detection). They name the link, not a host beyond
/// it, which is why the IPv6 anti-spoof defaults list them: to keep them out of the rest.
#[inline(always)]
fn from_the_link(src: &Addr) -> bool {
    src[0] == 0xfe && src[1] & 0xc0 == 0x80 || *src == [0; 16]
}

/// The ICMPv6 that IPv6 itself needs, passed whatever the rules say: neighbour discovery
/// (RFC 4861: hop limit 255, which no router forwards, so it is from the link), multicast
/// listener discovery (RFC 2710, 3810: hop limit 1, from a link-local address; switches
/// that snoop it stop forwarding neighbour solicitations to a host whose reports they miss),
/// and packet-too-big to or from our address (RFC 4890 §4.3.1: IPv6 routers never
/// fragment, so without it PMTU discovery fails and large transfers hang): `too_big_ours`
/// says the packet is one (ICMPv6 type 2) to or from the first of our IPv6 addresses, or
/// may be to or from another (the caller asks [`ours`] before it passes one).
#[inline(always)]
fn icmpv6_infrastructure(ip: &Ip, kind: u8, too_big_ours: bool) -> Option<Builtin> {
    if ip.protocol != PROTO_ICMPV6 {
        return None;
    }
    let link_local_source = ip.src[0] == 0xfe && ip.src[1] & 0xc0 == 0x80;
    if (ICMPV6_ND_FIRST..=ICMPV6_ND_LAST).contains(&kind) && ip.hop_limit == 255
        || ICMPV6_MLD.contains(&kind) && ip.hop_limit == 1 && link_local_source
    {
        return Some(Builtin::NeighbourDiscovery);
    }
    too_big_ours.then_some(Builtin::PacketTooBig)
}

/// The DHCP client's exchange (`[host] dhcp`): a server's answer in (UDP 67 → 68, DHCPv6
/// 547 → 546), the client's message out (68 → 67, 546 → 547), whatever the addresses (a
/// client without a lease sends from 0.0.0.0 or its link-local address, to broadcast or a
/// multicast group, and is answered at an address not yet its own). Each family's ports
/// alone: nothing else reaches the client's port from a stranger.
#[inline(always)]
fn dhcp_client(v6: bool, direction: Direction, src_port: u16, dst_port: u16) -> Option<Builtin> {
    let (server, client) =
        if v6 { (DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT) } else { (DHCP_SERVER_PORT, DHCP_CLIENT_PORT) };
    let (from, to) = match direction {
        Direction::In => (server, client),
        Direction::Out => (client, server),
    };
    (src_port == from && dst_port == to).then_some(Builtin::Dhcp)
}

/// The counter of the flow a well-formed packet belongs to, if it is tracked.
#[inline(always)]
fn established(ip: &Ip, peer: Addr, l4: &L4, direction: Direction, config: &Config) -> Option<u32> {
    // A bare SYN opens a connection: from the far end it is never a return, from our end
    // its rule tracks it afresh. Skipping the lookup also spares SYN floods one.
    if let L4::Tcp { flags, .. } = *l4
        && (!tcp_flags_valid(flags) || flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
    {
        return None;
    }
    let key = conntrack::flow_key(direction, peer, ip.protocol, l4)?;
    conntrack::established(&key, direction, l4, conntrack::now(), config)
}

/// The ICMP errors a `related` rule can name (the policy allows no other type there).
#[inline(always)]
fn is_icmp_error(v6: bool, kind: u8) -> bool {
    if v6 {
        matches!(kind, ICMPV6_DEST_UNREACHABLE | ICMPV6_TIME_EXCEEDED | ICMPV6_PARAMETER_PROBLEM)
    } else {
        matches!(kind, ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM)
    }
}

/// Whether the datagram an ICMP error quotes belongs to a tracked flow: it travelled the
/// other way (the error answers it), so it is looked up as a packet of that direction.
///
/// Inlined, like everything here: as a BPF subprogram LLVM passes it the packet pointer
/// in a shape the verifier refuses (`pointer arithmetic with <<=`).
#[inline(always)]
fn related(frame: &impl Frame, ip: &Ip, direction: Direction, config: &Config) -> bool {
    let Ok(key) = parse_quoted(frame, ip, direction.reverse()) else {
        return false;
    };
    conntrack::is_tracked(&key, conntrack::now(), config)
}

/// The lock-out trap, from our side: a session to one of our services that began before
/// the filter, where the server speaks first (an SSH session printing `firewall up`'s
/// own output). An egress TCP segment with ACK and no SYN from a port an inbound rule serves, to
/// a peer that rule admits, is that session's return traffic: track it as opened from
/// outside. Only egress, the host's own packets: ingress keeps to the exact tuple.
#[inline(always)]
fn picked_up(
    direction: Direction,
    l4: &L4,
    peer: Addr,
    flow: Option<&FlowKey>,
    config: &Config,
) -> Option<u32> {
    let (Direction::Out, L4::Tcp { src_port, flags, .. }, Some(flow)) = (direction, l4, flow) else {
        return None;
    };
    // Established segments only: a handshake is still under way, and its SYN, when the
    // peer repeats it, goes through the rule.
    if flags & (TCP_SYN | TCP_ACK) != TCP_ACK {
        return None;
    }
    let key = allow_key(Direction::In, PROTO_TCP, *src_port, peer, config);
    let rule = allowed(&key, direction, config)?;
    // No session from a peer the anti-spoof sources name ever got in, a rule with
    // `returns = false` has no returns to pick up, and a trap admits nothing.
    if rule.flags & (ALLOW_ONE_WAY | ALLOW_TRAP) != 0 || spoofed_peer(&peer, !is_v4_mapped(&peer), direction)
    {
        return None;
    }
    conntrack::track(flow, Direction::In, Direction::Out, rule.rule, l4, conntrack::now(), config);
    Some(rule_counter(rule.rule, Line::Established))
}

/// The allow-list key of a packet of `protocol` to service `port` (ICMP: the type) with
/// remote end `peer`, opening a flow `direction`: with ranges in the policy, a tcp or udp
/// port is the first port of its interval, which the entries of every rule covering the
/// interval name (see firewall_common::port_interval_slot). One array lookup, whatever the
/// number of ranges; none without them.
#[inline(always)]
fn allow_key(direction: Direction, protocol: u8, port: u16, peer: Addr, config: &Config) -> AllowKey {
    let mut port = port;
    if config.flags & CONFIG_HAS_RANGES != 0
        && let Some((index, shift)) = port_interval_slot(direction as u8, protocol, port)
        && let Some(lanes) = PORT_INTERVALS.get(index)
    {
        port = port.wrapping_sub((*lanes >> shift) as u16);
    }
    AllowKey { direction: direction as u8, protocol, port, peer }
}

/// The most specific entry for `key`: [`allow_line`]'s answer, the key handed over in the
/// scratch slot of `direction` (the program's: the egress program asks for inbound keys
/// too), as to [`antispoof_line`].
#[inline(always)]
fn allowed(key: &AllowKey, direction: Direction, config: &Config) -> Option<AllowValue> {
    let scratch = SCRATCH.get_ptr_mut(direction as u32)?;
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile.
    unsafe { (*scratch).allow = *key };
    match allow_line(direction as u32, config.flags & CONFIG_HAS_PREFIXES) {
        NOT_ALLOWED => None,
        packed => Some(AllowValue { rule: packed as u32, flags: (packed >> 32) as u32 }),
    }
}

/// [`allow_line`]'s answer where no entry holds the key (a rule id is below `MAX_RULES`).
const NOT_ALLOWED: u64 = u64::MAX;

/// The most specific allow-list entry for the key in the scratch slot of `direction`,
/// its rule and flags packed (`rule | flags << 32`), or [`NOT_ALLOWED`]: the peer itself
/// (a hash: constant time at any list size), then its prefixes (a trie, asked only where
/// `prefixes`, the policy's `CONFIG_HAS_PREFIXES`, is set), then anyone. Each lookup the
/// service's skip bits ([`SERVICE_SKIPS`]) say would miss is skipped.
///
/// Global (its symbol exported), so that the verifier checks it once: inlined, each way
/// through the skips had it walk the rest of the chain again, 2,000 to 3,000 instructions
/// more a program.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn allow_line(direction: u32, prefixes: u32) -> u64 {
    let pack = |value: AllowValue| u64::from(value.rule) | u64::from(value.flags) << 32;
    let Some(scratch) = SCRATCH.get_ptr_mut(direction) else {
        return NOT_ALLOWED;
    };
    // SAFETY: as `allowed`'s; a map value pointer is valid for the program's run.
    let key = unsafe { &mut (*scratch).allow };
    let skips = service_skips(key);
    if skips & SKIP_PEERS == 0 {
        if let Some(value) = ALLOW_EXACT.get_ptr(&*key) {
            // SAFETY: a map value pointer, valid for this run.
            return pack(unsafe { *value });
        }
        if prefixes != 0
            && let Some(value) = ALLOW_PREFIX.get(Key::new(ALLOW_KEY_SERVICE_BITS + 128, *key))
        {
            return pack(*value);
        }
    }
    if skips & SKIP_ANYONE != 0 {
        return NOT_ALLOWED;
    }
    any_peer(&mut key.peer);
    // SAFETY: as above.
    ALLOW_EXACT.get_ptr(key).map_or(NOT_ALLOWED, |value| pack(unsafe { *value }))
}

/// The skip bits of `key`'s service ([`SERVICE_SKIPS`]): 0, every lookup asked, where it
/// has none.
#[inline(always)]
fn service_skips(key: &AllowKey) -> u64 {
    match service_skip_slot(key.direction, key.protocol, key.port) {
        Some((index, shift)) => SERVICE_SKIPS.get(index).map_or(0, |bits| *bits >> shift),
        None => 0,
    }
}

/// Makes `peer` [`ANY_PEER`] (all zeroes) with sixteen byte stores: `= ANY_PEER` costs a
/// call of LLVM's memset, a byte loop, on every packet the rules judge.
#[inline(always)]
fn any_peer(peer: &mut Addr) {
    for byte in peer.iter_mut() {
        // SAFETY: a valid, aligned `u8` of `peer`. Volatile, so that the stores are not
        // merged back into a memset.
        unsafe { core::ptr::write_volatile(byte, ANY_PEER[0]) };
    }
}
