//! A reference model of the firewall: what the kernel programs must decide for every
//! frame, in plain Rust, written from the documentation (docs/design.md "Where each rule
//! lives" and "Where this differs from the seed's iptables", docs/operations.md "The
//! blocklist", docs/policy.md) and not from the kernel code. It reads the validated
//! [`Policy`] itself (its rules, its peers as prefixes, its services) and never the map
//! contents `compile::plan` makes of it, so a fault in that compilation shows as a
//! disagreement too; the blocklist is live state, not policy, and the model takes its
//! entries as `firewall blocklist` lists them ([`State::blocks`]). `tests/tests/integration/model.rs`
//! runs generated frames through the loaded programs and through [`judge`] and requires
//! the same verdict and the same counter line for every one.
//!
//! # The specification
//!
//! A frame is judged in a direction: *in* (received, the XDP program) or *out* (sent,
//! the TC egress program). The judgement is a verdict, pass or drop, and exactly one
//! counter line, which counts the packet and its bytes (the frame's length). Each step
//! below either decides or goes on to the next. "The direction's chain" is INPUT for in,
//! OUTPUT for out.
//!
//! Until the configuration's ready flag is set every frame passes uncounted (the
//! lock-out guard of a half-loaded filter); everything below is the loaded filter.
//!
//! ## 1. The link layer
//!
//! Nothing the host's IP stack would receive may pass unjudged, in either direction.
//!
//! 1. An Ethernet header (14 bytes; the ethertype at offset 12), then up to two VLAN tags:
//!    while the ethertype is 0x8100 (802.1Q) or 0x88A8 (802.1ad) and fewer than two tags
//!    were read, a 4-byte tag follows whose last two bytes are the next ethertype. A
//!    frame that ends inside any of these headers: drop, the direction's `invalid`.
//! 2. Then the ethertype decides:
//!    - IPv4 (0x0800): go on to rule 3. IPv6 (0x86DD): without `[host] address6`, drop,
//!      the direction's `ipv6` (the policy filters no IPv6, so none gets in unjudged);
//!      with it, go on to rule 3a.
//!    - 0x8100 or 0x88A8, a third tag: drop, the direction's `invalid`, whatever follows
//!      (or nothing). Linux strips priority tags (VLAN 0) at any depth and hands what is
//!      inside to IP; the filter reads two.
//!    - The link's own protocols, which end at the neighbour and which Linux hands to no
//!      IP stack: ARP (0x0806), LLDP (0x88CC), 802.1X (0x888E), the slow protocols such
//!      as LACP (0x8809), and any value up to 1500 (0x05DC), an 802.3 length (LLC: STP,
//!      …; Linux's SNAP clients are AppleTalk's, never IP's). Pass, the direction's
//!      `non-ip`: iptables never sees those, and the host needs them.
//!    - Anything else (MPLS, PPPoE, 0x9100, IPX, 1501 to 1535, …): drop, the direction's
//!      `ethertype`.
//!
//! ## 2. The IP header
//!
//! 3. An IPv4 header is valid when the fixed 20 bytes are in the frame, the version is 4,
//!    the header length IHL×4 is at least 20, the total length is at least IHL×4, and the
//!    IP header's offset plus the total length is at most the frame's length (bytes after
//!    the total length, Ethernet padding, are ignored). Otherwise: drop, the direction's
//!    `invalid`. The checksum is not checked (the stack does that).
//!
//!    3a. An IPv6 header is valid when its fixed 40 bytes are in the frame, the version is
//!    6, the payload length is not 0, the IP header's offset + 40 + the payload length is
//!    at most the frame's length, and neither the source nor the destination is in
//!    `::ffff:0:0/96` (IPv4-mapped: the filter keeps IPv4 addresses there, so nothing
//!    IPv6 may pass for an IPv4 peer). Otherwise: drop, the direction's `invalid`. The
//!    hop limit is kept (rule 10a).
//!
//!    3b. IPv6 extension headers are walked. `next` starts as the header's next-header
//!    field, `cursor` at the end of the fixed header, and `end` is the IP header's offset
//!    plus 40 plus the payload length. At most four times, by `next`:
//!
//!    - 0 (hop-by-hop) on any walk but the first: invalid;
//!    - 0, 43 (routing), 60 (destination options): the 2 bytes at `cursor` must be in the
//!      frame; `next` becomes the first, and the header's length is (the second + 1) × 8;
//!    - 51 (AH): likewise, the length (the second + 2) × 4;
//!    - 44 (fragment): 8 bytes must be in the frame; `next` becomes the first, the length
//!      is 8; the big-endian 16 bits of bytes 2 and 3 AND 0xFFF8 are the fragment's
//!      offset in bytes, their lowest bit the M flag (more to come), the big-endian 32
//!      bits of bytes 4 to 7 its identification, and its payload the bytes from the end
//!      of this header to `end` (rule 4 says what fragment that makes); a second fragment
//!      header after a first fragment's replaces what the first said (the host reassembles
//!      the outer datagram first, whose later fragments no first then admits);
//!    - anything else ends the walk.
//!
//!    After each header `cursor` moves on by its length, and a `cursor` past `end` is
//!    invalid; a later or absurd fragment (rule 4) ends the walk there, while a first
//!    fragment goes on (it holds the rest of the chain, RFC 7112). When four headers were
//!    walked, the packet is whole or a first fragment, and `next` is still one of 0, 43,
//!    44, 51, 60: invalid (such chains exist to hide the transport header). Each invalid:
//!    drop, the direction's `invalid`. The transport protocol is then `next`, and its
//!    payload the `end − cursor` bytes at `cursor`.
//! 4. A packet's *offset* (in bytes), *more-fragments flag*, *identification* and
//!    *fragment payload*: in IPv4, 8 × the header's 13-bit offset field, its MF flag, its
//!    16-bit identification and the total length less IHL×4; in IPv6, rule 3b's (none
//!    without a fragment header: offset 0, M clear). The packet is *whole* when the offset
//!    is 0 and the flag clear (don't-fragment is no fragment, nor is an atomic IPv6
//!    fragment). Otherwise it is *absurd* when the offset plus the fragment payload is
//!    over 65,535, or the flag is set and the fragment payload is no multiple of 8; else a
//!    *first fragment* at offset 0, a *later fragment* past it. A fragment's *datagram* is
//!    (source, destination, identification, protocol, direction), where the protocol is
//!    IPv4's protocol field or the next-header field of IPv6's fragment header.
//! 5. The *local* address is the destination for in, the source for out; the *peer* is
//!    the other one. The packet is *ours* when the local address is one of the host's
//!    addresses of its family: one of `[host] address` (OURIP, a string or a list) for
//!    IPv4, of `address6` for IPv6. Every rule below applies to all of them alike.
//!
//! 5a. A later or an absurd fragment (rule 4) is decided before anything else below: a
//!     blocked peer (rule 11a) drops it, on the entry's line of the direction. Then an
//!     absurd one drops, the direction's `invalid-fragment`. A later one passes when its
//!     datagram is remembered (rule 24a), the time is before the entry's deadline and its
//!     offset is at least the entry's first length, counted on the entry's line; it drops,
//!     the direction's `invalid-fragment`, when remembered and in time but at a smaller
//!     offset (it would overwrite what the filter judged); else the direction's
//!     `fragment-orphan`. Ours or not (no first to another address passes).
//!
//! ## 3. The transport header
//!
//! The IPv4 payload is the total length minus IHL×4 bytes, after the IP header, and its
//! protocol the header's; IPv6's are rule 3b's.
//!
//! 6. TCP (protocol 6) parses when the payload is at least 20 bytes and the data offset×4
//!    is at least 20 and at most the payload. UDP (17) parses when the payload is at
//!    least 8 bytes and the UDP length field is at least 8 and, but in a first fragment
//!    (which carries part of what the field counts), at most the payload.
//!    *ICMP* is protocol 1 in IPv4 and ICMPv6, protocol 58, in IPv6 (the other family's
//!    number is just another protocol); it parses when the payload is at least 8 bytes.
//!    Its echo request and reply are types 8 and 0 in IPv4, 128 and 129 in ICMPv6. Any
//!    other protocol has no transport header to parse, and is never malformed.
//! 7. TCP flags are *valid* as in netfilter's table: ignoring PSH, ECE, CWR (and NS), the
//!    set of FIN, SYN, RST, ACK, URG is one of SYN, SYN+URG, SYN+ACK, RST, RST+ACK,
//!    FIN+ACK, FIN+ACK+URG, ACK, ACK+URG. A *bare SYN* is SYN without ACK.
//!
//! ## 4. Flows
//!
//! 8. A flow is keyed from this host's point of view: (peer address, peer port, local
//!    port, protocol) for TCP and UDP; (peer address, the direction its requests travel,
//!    echo identifier, ICMP's protocol number in the family: 1 or 58) for ICMP echo
//!    requests and replies: a request travels its own direction, a reply answers
//!    requests of the opposite one, so an inbound and an outbound echo with the same peer
//!    and identifier are two flows. Nothing else has a flow key. The local address is
//!    always one of the host's addresses of the family, and every rule applies to all of
//!    them alike, so the key is all a verdict needs and both directions find the same
//!    entry (two flows that differ only in the host's address share it: one rule admitted
//!    both); an IPv6 flow never matches an IPv4 packet, nor the
//!    other way round (their peers differ in family).
//! 9. A flow remembers the rule that admitted it, the direction of the packet that opened
//!    it (its *origin*), the *table* it is in (half-open or established), its TCP state
//!    (SYN sent, SYN received, open, FIN seen, RST seen), which ends have been *heard*
//!    (sent a TCP segment without RST: the peer's inbound, the host's outbound), the
//!    acknowledgement number and the window field (16 bits, as sent) of the host's last
//!    outbound TCP segment with ACK, once there is one, the host's SYN's sequence number
//!    plus one, once the host sent a SYN, and the time of its last packet. A key is in one table at most. It is *live* until the timeout of
//!    its protocol and state passes after that time, in either table (`[conntrack]`:
//!    `tcp_syn_sent_timeout` in SYN sent, `tcp_syn_recv_timeout` in SYN received,
//!    `tcp_established_timeout` open, `tcp_fin_timeout` after a FIN, `tcp_rst_timeout`
//!    after a RST, `udp_timeout`, `icmp_timeout`; the kernel refreshes the time at most
//!    once a second when nothing else about the flow changes, so a flow may end up to a
//!    second early).
//!
//!    9a. A TCP segment is *believed* when it is outbound (the host's own), or, inbound,
//!    when the host has sent a segment with ACK on the flow and the segment's sequence
//!    number minus that acknowledgement number, modulo 2^32, is at most that window (the
//!    host's TCP ignores the rest); before the host sent any ACK, only a segment with RST
//!    and ACK whose acknowledgement number is the host's SYN's plus one (a refusal of the
//!    host's SYN) is believed.
//!
//!    9b. A TCP segment travelling `d` on a flow (rule 11) does, in this order: if
//!    outbound, its acknowledgement number and window become the host's when it has ACK,
//!    and its sequence number plus one the host's SYN's when it has SYN; if it has no RST,
//!    `d`'s end is heard. Then, by the state, the first that applies:
//!    - with RST: if believed, RST seen;
//!    - open, with FIN, believed: FIN seen;
//!    - RST seen, outbound, in the established table: open, or FIN seen with FIN (the
//!      host's TCP did not take the RST: RFC 5961 answers one inside the window but not
//!      at its edge with a challenge ACK, and the host speaks on);
//!    - SYN sent or SYN received, with FIN: if believed, FIN seen;
//!    - SYN sent, with SYN and ACK, travelling against the origin, outbound or with the
//!      acknowledgement number the host's SYN's plus one: SYN received;
//!    - SYN received, with ACK and neither SYN, RST nor FIN: it *completes* the opening
//!      when, before it, outbound, the peer had been heard; or inbound, the host had been
//!      heard and, if the host sent a SYN, its acknowledgement number is that SYN's plus
//!      one (a spoofer never saw the host's SYN). Then open.
//!
//!    9c. A flow in the half-open table moves to the established table (is *promoted*),
//!    keeping all it remembers, by a TCP segment that completes its opening, a UDP packet
//!    travelling against its origin, or an echo reply (rule 11). Every flow starts in the
//!    half-open table; so the flows of packets nobody answered (spoofed ones) never
//!    reach the established table.
//! 10. Both tables are LRUs (`[conntrack] max_entries` established flows, `max_half_open`
//!     half-open ones): when one is full, its least recently used flow is forgotten (the
//!     model has no capacity; the tests stay far below it, and check that the kernel
//!     evicted nothing: its inserts less its removals are what the tables hold).
//!
//! ## 4a. What IPv6 itself needs
//!
//! 10a. An IPv6 packet, whole or a first fragment, whose ICMPv6 header parses (rule 6) is
//!      *discovery* when its type is 133 to 137 (neighbour discovery) and its hop limit
//!      255 (no router forwards those), or its type is 130, 131, 132 or 143 (multicast
//!      listener discovery), its hop limit 1 and its source in `fe80::/10`; whatever its
//!      addresses. It is *packet-too-big* when its type is 2 and it is ours (routers never
//!      fragment IPv6: without it PMTU discovery breaks). Neither has a flow key (rule 8);
//!      they pass in rules 12 and 13, after the blocklist and (in) the anti-spoof sources,
//!      counted on the direction's `icmpv6-nd` and `icmpv6-ptb`.
//!
//! 10b. With `[host] dhcp` (the default), a packet, whole or a first fragment, whose UDP
//!      header parses (rule 6) is *DHCP* when it is the client's exchange: in IPv4, from
//!      port 67 to port 68 travelling in, from 68 to 67 travelling out; in IPv6, from 547
//!      to 546 in, from 546 to 547 out. Whatever its addresses: a client without a lease
//!      speaks from 0.0.0.0 (or its link-local address) to broadcast (or `ff02::1:2`), and
//!      is answered at an address not yet its own, by a server that may have a private
//!      one. It is decided before the tracked flows (rule 11): a peer it blocks (rule
//!      11a) drops it, on the entry's line of the direction; else it passes, the
//!      direction's `dhcp`, without meeting the anti-spoof lists or the checks of our
//!      address. It starts no flow.
//!
//! ## 5. The fast path: tracked flows first
//!
//! 11. When the packet is ours, whole or a first fragment, its transport header parses and has a
//!     flow key, and it is not a TCP segment with invalid flags nor a bare SYN, and a live
//!     flow has its key in either table: for TCP and UDP it passes, counted on the flow's
//!     rule's `ESTABLISHED` line if it travels opposite to the flow's origin (the return
//!     traffic), on its `NEW` line if it travels the origin's way (the flow continuing);
//!     in either table alike. For ICMP only an echo reply travelling opposite to the
//!     origin matches (a reply answers a request; an inbound request never rides an
//!     outbound echo's entry, GHSA-c66w-hq56-4q97); any other ICMP packet goes on to the
//!     rules. A matched TCP segment does what rule 9b says, and a matched packet may
//!     promote its flow (rule 9c); its time is now. A flow found past its timeout is
//!     forgotten, and the packet goes on.
//!
//! ## 5a. The blocklist
//!
//! 11a. The blocklist (`firewall block`) holds entries: a prefix of either family, a
//!      deadline (`CLOCK_MONOTONIC_COARSE` ns; 0: none) and a slot. For an address the
//!      most specific (longest) entry of its family containing it decides, and *blocks*
//!      it unless its deadline is not 0 and `now` has reached it (user space keeps every
//!      entry expiring no earlier than the entries it is inside, so an expired entry never
//!      hides a live one; the tests' entries never expire within a case: none, or an hour
//!      ahead). A packet whose peer is blocked drops, counted on the entry's line of the
//!      direction (its slot's INPUT line for in, its OUTPUT line for out), ours or not,
//!      whatever it is: a fragment, a malformed transport header, discovery,
//!      packet-too-big. So nothing passes to or from a blocked address but what the link
//!      needs: its own protocols (rule 2; blocks are IP prefixes), and the blocked host's
//!      discovery from its link-local address, another address, unless `fe80::/10` is
//!      blocked too.
//! 11b. Blocking a prefix ends the flows of every peer inside it (as `firewall block`
//!      does), so rule 11, which comes first, never passes a blocked peer's packets.
//! 11c. An offender rule 21a blocked is an entry too: the single address (IPv4 /32,
//!      IPv6 /128), its deadline, and the slot `OFFENDER_SLOT`, which no `firewall block`
//!      takes. It blocks as any entry, but is counted on the chain's `source-limit` line
//!      (INPUT for in, OUTPUT for out), and its flows do not end (rule 11 still passes
//!      them).
//!
//! 11d. The named lists (`firewall block --from FILE --list NAME`) hold prefixes of
//!      either family, each once, with the slot of the list that lasts longest of those
//!      holding it; a list lasts until its deadline (`--for`; `CLOCK_MONOTONIC_COARSE`
//!      ns), or for ever (0). When no live entry of 11a blocks an address, the listed
//!      prefixes of its family containing it are taken from the longest: the first whose
//!      list has not expired (`now` before its deadline) blocks it, as 11a's entries do
//!      (whatever the packet is), counted on its list's slot's line of the direction.
//!      An expired list's prefix is passed over, at most `MAX_LIST_NESTING` (8) of them;
//!      past that, or with no live one, the lists do not block it. Loading prefixes into
//!      a list ends the flows of every peer inside them (11b).
//!
//! ## 6. The chains
//!
//! The anti-spoof lists hold prefixes of both families; an address is in a list when a
//! prefix of its own family contains it.
//!
//! 12. In: a source in the anti-spoof source list drops, counted on the most specific
//!     (longest) entry that contains it, each entry its own line; but not discovery whose
//!     source is in `fe80::/10` or is `::`, the link's own addresses, which the IPv6
//!     defaults list to keep them out of everything else (discovery from any other
//!     source meets the list). Then discovery passes, the direction's `icmpv6-nd`, and
//!     packet-too-big, its `icmpv6-ptb`. If the packet is not ours, a destination in the
//!     anti-spoof destination list drops likewise. Then the chain is INPUT when ours,
//!     FORWARD when not.
//! 13. Out: discovery passes, the direction's `icmpv6-nd` (the host's own comes from its
//!     link-local address), and packet-too-big, its `icmpv6-ptb`. A packet that is not
//!     ours (another source address) drops, OUTPUT `antispoof-source` (outbound
//!     spoofing); the chain is OUTPUT.
//! 14. A first fragment whose transport header does not parse (rule 6: too short for
//!     it) drops, the chain's `invalid-fragment`. One that parses goes on as a whole packet
//!     would (later and absurd fragments were decided in rule 5a).
//! 15. A transport header that does not parse (rule 6) drops, the chain's `invalid`.
//! 16. TCP flags that are not valid (rule 7) drop, the chain's `invalid-tcp-flags`.
//!     (16a) Then a TCP segment from or to port 0, or a UDP datagram to port 0, drops,
//!     the chain's `invalid`: no stack sends from or listens on it (a UDP datagram may
//!     come from port 0, RFC 768's "no reply wanted", and is judged as any).
//! 17. FORWARD drops everything else, FORWARD `policy`: this host routes nothing.
//!
//! ## 7. The allow-lists
//!
//! 18. The packet's service is its TCP or UDP destination port, or its ICMP type (an
//!     ICMPv6 type for IPv6). Any other protocol has no service: drop, the chain's
//!     `policy`.
//! 19. A rule *admits* the packet when the rule's direction is the packet's, one of its
//!     services is the packet's and one of its peers contains the packet's peer address.
//!     A TCP or UDP service is the protocol and port, or the protocol and a range of ports
//!     FIRST-LAST, which is the packet's when FIRST <= port <= LAST. A rule's ICMP service of type k is
//!     ICMP type k for an IPv4 packet and ICMPv6 type e(k) for an IPv6 one, where e is
//!     the table in docs/policy.md "IPv6": 0 (echo reply) → 129, 3 (destination
//!     unreachable) → 1, 8 (echo request) → 128, 11 (time exceeded) → 3, 12 (parameter
//!     problem) → 4; a k without an
//!     entry is no ICMPv6 service. A peer prefix contains addresses of its own family
//!     only; `any` contains every address of both. Of the rules that admit it, the most
//!     specific peer wins: a single address, then the longest CIDR, then `any`
//!     (validation lets one rule only own a given peer of a given service and
//!     direction). Only the winner is asked; a refusal below does not fall back to a less
//!     specific rule.
//! 20. A rule with `related = true` (ICMP errors: destination unreachable, time exceeded,
//!     parameter problem; ICMPv6 types 1, 3, 4) admits an error only when the datagram
//!     it quotes, keyed (rule 8) as a packet travelling the opposite direction (in an
//!     inbound error, the datagram this host sent: its destination is the peer), has a
//!     live flow. An IPv4 error quotes, after its 8-byte ICMP header, an IPv4 header
//!     (version 4, IHL×4 at least 20) and the 8 bytes after it, all in the frame; an
//!     ICMPv6 error, after its 8-byte header, a 40-byte IPv6 header (version 6) and the 8
//!     bytes after it, all in the frame, whose protocol is its next-header field (no
//!     extension headers are walked). The quoted protocol must be TCP, UDP or the
//!     family's ICMP; an IPv4 header quoted in ICMPv6, or an IPv6 one in ICMP, quotes
//!     nothing. The flow is live in either table. Otherwise: drop, the chain's `policy`.
//!
//! 20b. A rule with `uids` (outbound rules alone have them) admits a packet only if the
//!     uid of the socket that sent it is one of them. A packet of no socket of its own
//!     has the overflow uid, 65534, which no rule may name. The frames judged here are
//!     the test runner's, which gives each a dummy socket of uid 0 ([`TEST_RUN_UID`]).
//!     Otherwise: drop, the chain's `policy`, taking no token (rules 21, 21a).
//! 20a. With `[conntrack] tcp_loose = false`, a rule admits a TCP segment only if it is a
//!     bare SYN: SYN set, and ACK, RST and FIN clear. Otherwise: drop, the chain's
//!     `policy`, taking no token (rule 21). Rule 23's pick-up is not affected.
//! 21. A rule with a `limit` has one token bucket, global across CPUs and shared by both
//!     families: a GCRA with `interval` = one token's time and `burst`. A packet at time
//!     `now` conforms when `max(tat, now) + interval <= now + burst × interval`, and then
//!     `tat` becomes `max(tat, now) + interval` (`tat` starts at 0: a full bucket). So a
//!     full bucket admits `burst` packets at once, then one per interval. A packet over
//!     the limit drops, the chain's `policy`. Only packets a rule is about to admit take
//!     a token (a related check that failed took none; tracked flows take none).
//! 21a. A rule with a `per_source` limit (inbound rules alone have one) has a GCRA for
//!      each source: the peer's address masked to the limit's `prefix` (IPv4, default 32)
//!      or `prefix6` (IPv6, default 64), kept apart per rule and shared by every CPU,
//!      asked before the rule's own limit (rule 21): with `interval` = one token's time
//!      (the window over the count) and `burst`, as rule 21, its `tat` starting at 0.
//!      A packet that does not conform drops, counted on the chain's `source-limit`
//!      line, and takes no token of rule 21; with `block`, its address (the peer's own,
//!      not the prefix) becomes an entry
//!      of the blocklist (rule 11c) until `now` plus `block`, replacing an expired entry
//!      of that address. Only packets the rule is about to admit ask (rules 20 and 20a
//!      first); tracked flows never do. Before the rate, a limit with `connections` N
//!      counts the source's open flows under the rule: of the keys of the flows the
//!      source (masked as above) opened under the rule (each packet of TCP, UDP or ICMP
//!      echo that asked and was not refused records its key, once), those live (rule 9)
//!      in either table with the rule's index, neither FIN nor RST seen, other than this
//!      packet's own key. With N or more open, the packet drops, counted on the chain's
//!      `source-limit` line, and asks neither the rate nor rule 21; a packet no flow
//!      follows (ICMP other than echo) is not counted. A rule with `trap` (inbound, with
//!      no limit nor `per_source`) admits nothing: at this point the packet drops,
//!      counted on the rule's `NEW` line, and its address becomes an entry of the
//!      blocklist as an offender's, until `now` plus the trap's duration.
//! 22. Admitted: the flow starts to be tracked in the half-open table, replacing any
//!     entry of its key there, with the rule, origin the packet's direction and the time
//!     now (TCP, UDP, ICMP echo requests; an echo reply or any other ICMP type starts no
//!     flow); pass, the rule's `NEW` line. A TCP flow's state is the first segment's: RST
//!     seen with RST, else FIN seen with FIN, else SYN sent without ACK, else SYN received
//!     (a first packet that is not a SYN starts a flow too: sessions older than the filter
//!     are picked up); the segment's end is heard unless it has RST, and an outbound one
//!     gives the host's numbers as in rule 9b. With the key in the established table: an
//!     echo request whose flow is live there only refreshes it there (its rule this
//!     rule's, its time now); a TCP segment without ACK whose flow is live and open there
//!     changes nothing (netfilter ignores such a SYN too: a forger's would demote the
//!     flow, and a real new connection on the tuple rides it); anything else forgets that
//!     entry first. An outbound packet to a peer the anti-spoof source list contains
//!     passes but starts no flow: its returns meet that list (rule 12), as in the seed,
//!     whose anti-spoof lines come before its ESTABLISHED ones. A rule with `returns =
//!     false` starts no flow and changes no entry: its packets pass, each judged alone.
//!     A rule's `log` changes no verdict and no line: it tells its admits as events.
//! 23. No rule admits it, and it is an outbound TCP segment with ACK and without SYN:
//!     the pick-up of an inbound session older than the filter. If a rule of direction in
//!     admits the reverse view (TCP, the segment's source port as the service port, its
//!     destination as the peer; the most specific as in rule 19), the segment passes,
//!     counted on that rule's `ESTABLISHED` line, and the flow starts to be tracked as
//!     in rule 22, opened inbound by that rule (its origin in) but by this outbound
//!     segment (the host heard, its numbers recorded). That rule's limit is not
//!     consulted. A peer the anti-spoof source list contains is never picked up (no
//!     session from it got in), nor the returns of a rule with `returns = false` or a
//!     trap (the most specific rule decides: a wider one is not asked).
//! 24. Otherwise: drop, the chain's `policy` (`-P … DROP`).
//!
//! ## 8. After the verdict
//!
//! 24a. A first fragment that passed (by any rule above) remembers its datagram (rule 4)
//!      with a deadline, the time now plus `[conntrack] fragment_timeout`, the line it was
//!      counted on, and its fragment payload as its *first length*; replacing any entry of
//!      that datagram. A block does not forget them: later fragments meet the blocklist
//!      themselves (rule 11a). The table is an LRU of 4,096 (the tests stay far below).
//!
//! # Shape
//!
//! Addresses are [`IpAddr`], of the family they came in; prefixes are 128-bit ([`Net`],
//! IPv4 as IPv4-mapped `::ffff:a.b.c.d`) and know their family. The parse yields a
//! family-neutral [`Datagram`] from either header, so the rules after it read the
//! family only where the specification names it: the host's address, ICMP's numbers,
//! rules 10a and 12 and the quoted header.
use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use firewall_common::{
    BLOCK_COUNTER_BASE, Builtin, Chain, Direction, ECHO_REQUESTS_IN, ECHO_REQUESTS_OUT, ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST, Line, OFFENDER_SLOT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, block_counter,
    builtin_counter, rule_counter,
};
use firewall_user::{
    compile::{AntispoofEntry, AntispoofList, Ids},
    policy::{Policy, Prefix, Rule, Service},
};

pub use crate::harness::Verdict;

/// Rule 11d: how many expired lists' prefixes the lists pass over (docs/operations.md),
/// written here rather than taken from the kernel's constant.
const LIST_NESTING: usize = 8;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Rule 20b: the uid of the socket of an outbound frame, as the kernel's test runner
/// (`BPF_PROG_TEST_RUN`) makes it: a dummy socket, initialised without a file, whose owner
/// is root.
pub const TEST_RUN_UID: u32 = 0;
/// Rule 2's protocols of the link itself, written from their registries (IEEE's
/// ethertypes) rather than taken from the kernel's code.
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_LLDP: u16 = 0x88cc;
pub const ETHERTYPE_EAPOL: u16 = 0x888e;
pub const ETHERTYPE_SLOW: u16 = 0x8809;
/// The largest 802.3 length.
pub const ETHER_MAX_LENGTH: u16 = 1500;

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const MAX_VLAN_TAGS: usize = 2;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// IPv6 extension headers rule 3b walks (RFC 8200, RFC 4302).
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_AH: u8 = 51;
pub const IPV6_DESTINATION_OPTIONS: u8 = 60;
const IPV6_EXTENSION_HEADERS: [u8; 5] =
    [IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DESTINATION_OPTIONS];
const MAX_EXTENSION_HEADERS: usize = 4;
const IPV6_HEADER: usize = 40;

/// ICMPv6 types the rules read (RFC 4443, RFC 4861, RFC 2710, RFC 3810), written here
/// from the RFCs rather than taken from `firewall_common`, so a wrong number there shows.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// Router solicitation, router advertisement, neighbour solicitation, neighbour
/// advertisement, redirect.
pub const ICMPV6_NEIGHBOUR_DISCOVERY: std::ops::RangeInclusive<u8> = 133..=137;
/// Listener query, report and done (MLDv1), and the MLDv2 report.
pub const ICMPV6_LISTENER_DISCOVERY: [u8; 4] = [130, 131, 132, 143];

/// Rule 19's table (docs/policy.md "IPv6"): the ICMPv6 type a rule's ICMP type k stands for
/// with IPv6 peers; `None` for a k that only IPv4 has.
pub fn icmpv6_type_of(k: u8) -> Option<u8> {
    match k {
        0 => Some(129), // echo reply
        3 => Some(1),   // destination unreachable
        8 => Some(128), // echo request
        11 => Some(3),  // time exceeded
        12 => Some(4),  // parameter problem
        _ => None,
    }
}

/// What the model decides for one frame: the verdict and the one line that counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub counter: u32,
}

fn pass(counter: u32) -> Outcome {
    Outcome { verdict: Verdict::Pass, counter }
}

fn drop(counter: u32) -> Outcome {
    Outcome { verdict: Verdict::Drop, counter }
}

/// A prefix in the 128-bit address space; an IPv4 prefix is IPv4-mapped (`::ffff:0:0/96`
/// plus its own length). It contains addresses of its own family only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net {
    pub bits: u128,
    pub len: u8,
    pub v6: bool,
}

/// An address as a 128-bit key: IPv6 as itself, IPv4 IPv4-mapped.
pub fn addr_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Net {
    pub fn from_prefix(prefix: &Prefix) -> Net {
        let len = if prefix.addr.is_ipv4() { 96 + prefix.len } else { prefix.len };
        Net { bits: addr_key(prefix.addr), len, v6: prefix.addr.is_ipv6() }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
        addr.is_ipv6() == self.v6 && addr_key(addr) & mask == self.bits & mask
    }
}

/// Rule 10b's ports: the DHCP client's (RFC 2131: server 67, client 68; RFC 8415:
/// server 547, client 546), from the server in, to it out.
fn dhcp_exchange(v6: bool, direction: Direction, src_port: u16, dst_port: u16) -> bool {
    let (server, client) = if v6 { (547, 546) } else { (67, 68) };
    match direction {
        Direction::In => (src_port, dst_port) == (server, client),
        Direction::Out => (src_port, dst_port) == (client, server),
    }
}

/// `fe80::/10`, where multicast listener discovery comes from (rule 10a).
fn link_local(addr: IpAddr) -> bool {
    Net { bits: 0xfe80 << 112, len: 10, v6: true }.contains(addr)
}

/// Rule 12's addresses of the link itself: `fe80::/10` and `::`.
fn of_the_link(addr: IpAddr) -> bool {
    link_local(addr) || addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// `::ffff:0:0/96` (rule 3a).
fn ipv4_mapped(addr: Ipv6Addr) -> bool {
    u128::from(addr) >> 32 == 0xffff
}

/// A rule's peer as the model matches it: anyone, or a prefix (a single address being
/// the longest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Any,
    Net(Net),
}

impl Peer {
    pub fn from_prefix(prefix: &Prefix) -> Peer {
        if *prefix == Prefix::ANY { Peer::Any } else { Peer::Net(Net::from_prefix(prefix)) }
    }

    /// How specific a match on this peer is: higher wins (rule 19). Only prefixes of one
    /// family meet at one address, so mapped lengths compare as well as their own.
    fn specificity(&self) -> u16 {
        match self {
            Peer::Any => 0,
            Peer::Net(net) => 1 + u16::from(net.len),
        }
    }

    fn contains(&self, addr: IpAddr) -> bool {
        match self {
            Peer::Any => true,
            Peer::Net(net) => net.contains(addr),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parse: bytes → a family-neutral description.
// ---------------------------------------------------------------------------------------

/// What the link layer and the IP header make of a frame (rules 1 to 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The frame ends inside the Ethernet header or a VLAN tag.
    TruncatedLink,
    /// A third VLAN tag.
    TagsTooDeep,
    /// One of the link's own protocols (ARP, …; rule 2); the ethertype after the tags.
    LinkProtocol {
        ethertype: u16,
    },
    /// Any other ethertype.
    OtherEthertype {
        ethertype: u16,
    },
    /// IPv6, while the policy has no `address6`.
    Ipv6,
    /// An IP header that fails rule 3, 3a or 3b: of which family, and which part of it.
    BadIp {
        ipv6: bool,
        why: &'static str,
    },
    Ip(Datagram),
}

/// An IP packet, whatever its family (that of its addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4's TTL, IPv6's hop limit.
    pub hop_limit: u8,
    pub fragment: Piece,
    /// The transport protocol: IPv4's protocol field, or the end of IPv6's walk.
    pub protocol: u8,
    pub transport: Transport,
}

/// Rule 4: which part of its datagram a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Whole,
    First { id: u32, protocol: u8, len: u16 },
    Later { id: u32, protocol: u8, offset: u16 },
    Absurd,
}

impl Piece {
    /// Rule 4, from the offset, the flag, the fragment payload, the identification and the
    /// datagram's protocol.
    fn of(offset: usize, more: bool, payload: usize, id: u32, protocol: u8) -> Piece {
        if offset == 0 && !more {
            Piece::Whole
        } else if offset + payload > 65_535 || more && !payload.is_multiple_of(8) {
            Piece::Absurd
        } else if offset == 0 {
            Piece::First { id, protocol, len: payload as u16 }
        } else {
            Piece::Later { id, protocol, offset: offset as u16 }
        }
    }

    fn whole(self) -> bool {
        self == Piece::Whole
    }

    /// Whole or a first fragment: what has a transport header.
    fn headed(self) -> bool {
        matches!(self, Piece::Whole | Piece::First { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// The window field as sent (unscaled).
        window: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP in IPv4, ICMPv6 in IPv6, with the family's own type numbers.
    Icmp(Icmp),
    /// A protocol with no header the rules read.
    Other,
    /// TCP, UDP or ICMP whose header is short or contradicts the IP header (rule 6).
    Malformed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub kind: u8,
    pub code: u8,
    /// Echo request or reply: which, and its identifier.
    pub echo: Option<Echo>,
    /// The datagram an error quotes, when the frame holds one (rule 20).
    pub quoted: Option<Quoted>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub request: bool,
    pub id: u16,
}

/// The start of a datagram quoted in an ICMP error: its addresses (of the error's family),
/// protocol and the first 8 bytes of its payload (the ports, or the ICMP type and echo
/// identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub head: [u8; 8],
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn ipv4_at(bytes: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]))
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// Rules 1 to 6: the frame as the model understands it, for a policy that filters IPv6
/// (`[host] address6`) or not.
pub fn parse(frame: &[u8], filters_ipv6: bool) -> Parsed {
    if frame.len() < ETH_HEADER {
        return Parsed::TruncatedLink;
    }
    let mut ethertype = be16(frame, 12);
    let mut at = ETH_HEADER;
    let mut tags = 0;
    while (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ) && tags < MAX_VLAN_TAGS {
        if frame.len() < at + VLAN_TAG {
            return Parsed::TruncatedLink;
        }
        ethertype = be16(frame, at + 2);
        at += VLAN_TAG;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, at),
        ETHERTYPE_IPV6 if filters_ipv6 => parse_ipv6(frame, at),
        ETHERTYPE_IPV6 => Parsed::Ipv6,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Parsed::TagsTooDeep,
        ETHERTYPE_ARP | ETHERTYPE_LLDP | ETHERTYPE_EAPOL | ETHERTYPE_SLOW => {
            Parsed::LinkProtocol { ethertype }
        }
        length if length <= ETHER_MAX_LENGTH => Parsed::LinkProtocol { ethertype: length },
        other => Parsed::OtherEthertype { ethertype: other },
    }
}

fn parse_ipv4(frame: &[u8], ip: usize) -> Parsed {
    if frame.len() < ip + 20 {
        return Parsed::BadIp { ipv6: false, why: "shorter than the fixed IPv4 header" };
    }
    let version = frame[ip] >> 4;
    let header = usize::from(frame[ip] & 0x0f) * 4;
    let total = usize::from(be16(frame, ip + 2));
    if version != 4 || header < 20 || total < header || ip + total > frame.len() {
        return Parsed::BadIp { ipv6: false, why: "IPv4 version, IHL or total length" };
    }
    let fragment_field = be16(frame, ip + 6);
    let more_fragments = fragment_field & 0x2000 != 0;
    let offset = usize::from(fragment_field & 0x1fff) * 8;
    let protocol = frame[ip + 9];
    let l4 = ip + header;
    let payload = total - header;
    let fragment = Piece::of(offset, more_fragments, payload, u32::from(be16(frame, ip + 4)), protocol);
    let transport = parse_transport(frame, false, protocol, l4, payload, fragment);
    Parsed::Ip(Datagram {
        src: ipv4_at(frame, ip + 12),
        dst: ipv4_at(frame, ip + 16),
        hop_limit: frame[ip + 8],
        fragment,
        protocol,
        transport,
    })
}

/// Rules 3a and 3b.
fn parse_ipv6(frame: &[u8], ip: usize) -> Parsed {
    if frame.len() < ip + IPV6_HEADER {
        return Parsed::BadIp { ipv6: true, why: "shorter than the fixed IPv6 header" };
    }
    if frame[ip] >> 4 != 6 {
        return Parsed::BadIp { ipv6: true, why: "IPv6 version" };
    }
    let payload = usize::from(be16(frame, ip + 4));
    let end = ip + IPV6_HEADER + payload;
    if payload == 0 || end > frame.len() {
        return Parsed::BadIp { ipv6: true, why: "IPv6 payload length" };
    }
    let (src, dst) = (ipv6_at(frame, ip + 8), ipv6_at(frame, ip + 24));
    if ipv4_mapped(src) || ipv4_mapped(dst) {
        return Parsed::BadIp { ipv6: true, why: "an IPv4-mapped address" };
    }
    let mut next = frame[ip + 6];
    let mut cursor = ip + IPV6_HEADER;
    let mut walked = 0;
    let mut fragment = Piece::Whole;
    while walked < MAX_EXTENSION_HEADERS {
        let in_frame = |n: usize| frame.len() >= cursor + n;
        let length = match next {
            IPV6_HOP_BY_HOP if walked > 0 => {
                return Parsed::BadIp { ipv6: true, why: "hop-by-hop after the first header" };
            }
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => {
                if !in_frame(2) {
                    return Parsed::BadIp { ipv6: true, why: "an extension header past the frame" };
                }
                next = frame[cursor];
                (usize::from(frame[cursor + 1]) + 1) * 8
            }
            IPV6_AH => {
                if !in_frame(2) {
                    return Parsed::BadIp { ipv6: true, why: "an authentication header past the frame" };
                }
                next = frame[cursor];
                (usize::from(frame[cursor + 1]) + 2) * 4
            }
            IPV6_FRAGMENT => {
                if !in_frame(8) {
                    return Parsed::BadIp { ipv6: true, why: "a fragment header past the frame" };
                }
                next = frame[cursor];
                let word = be16(frame, cursor + 2);
                let payload = end.saturating_sub(cursor + 8);
                fragment = Piece::of(
                    usize::from(word & 0xfff8),
                    word & 1 != 0,
                    payload,
                    be32(frame, cursor + 4),
                    next,
                );
                8
            }
            _ => break,
        };
        walked += 1;
        cursor += length;
        if cursor > end {
            return Parsed::BadIp { ipv6: true, why: "an extension header past the payload" };
        }
        if !fragment.headed() {
            break;
        }
    }
    if walked == MAX_EXTENSION_HEADERS && fragment.headed() && IPV6_EXTENSION_HEADERS.contains(&next) {
        return Parsed::BadIp { ipv6: true, why: "more than four extension headers" };
    }
    let transport = parse_transport(frame, true, next, cursor, end - cursor, fragment);
    Parsed::Ip(Datagram {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        hop_limit: frame[ip + 7],
        fragment,
        protocol: next,
        transport,
    })
}

/// ICMP's protocol number in IPv4 or IPv6.
fn icmp_protocol_of(v6: bool) -> u8 {
    if v6 { PROTO_ICMPV6 } else { PROTO_ICMP }
}

/// The echo request and reply types of ICMP or ICMPv6 (rule 6).
fn echo_types(v6: bool) -> (u8, u8) {
    if v6 { (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY) } else { (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY) }
}

/// An echo request or reply of type `kind`, identifier `id`, in the family.
fn echo_of(v6: bool, kind: u8, id: u16) -> Option<Echo> {
    let (request, reply) = echo_types(v6);
    (kind == request || kind == reply).then_some(Echo { request: kind == request, id })
}

/// Rule 6. `payload` is the IP header's own account of the bytes after it, which rules 3
/// to 3b have already found inside the frame. A later or absurd fragment has no transport
/// header: [`Transport::Other`], which rule 14 drops before anything reads it.
fn parse_transport(
    frame: &[u8],
    v6: bool,
    protocol: u8,
    l4: usize,
    payload: usize,
    piece: Piece,
) -> Transport {
    if !piece.headed() {
        return Transport::Other;
    }
    match protocol {
        PROTO_TCP => {
            if payload < 20 {
                return Transport::Malformed;
            }
            let data_offset = usize::from(frame[l4 + 12] >> 4) * 4;
            if data_offset < 20 || data_offset > payload {
                return Transport::Malformed;
            }
            Transport::Tcp {
                src_port: be16(frame, l4),
                dst_port: be16(frame, l4 + 2),
                flags: frame[l4 + 13],
                seq: be32(frame, l4 + 4),
                ack: be32(frame, l4 + 8),
                window: be16(frame, l4 + 14),
            }
        }
        PROTO_UDP => {
            if payload < 8 {
                return Transport::Malformed;
            }
            let length = usize::from(be16(frame, l4 + 4));
            if length < 8 || length > payload && piece.whole() {
                return Transport::Malformed;
            }
            Transport::Udp { src_port: be16(frame, l4), dst_port: be16(frame, l4 + 2) }
        }
        p if p == icmp_protocol_of(v6) => {
            if payload < 8 {
                return Transport::Malformed;
            }
            let kind = frame[l4];
            let quoted = if v6 { quoted_ipv6(frame, l4 + 8) } else { quoted_ipv4(frame, l4 + 8) };
            Transport::Icmp(Icmp {
                kind,
                code: frame[l4 + 1],
                echo: echo_of(v6, kind, be16(frame, l4 + 4)),
                quoted,
            })
        }
        _ => Transport::Other,
    }
}

/// Rule 20's quoted datagram in ICMP: an IPv4 header and 8 bytes after it, inside the
/// frame.
fn quoted_ipv4(frame: &[u8], at: usize) -> Option<Quoted> {
    if frame.len() < at + 20 {
        return None;
    }
    let header = usize::from(frame[at] & 0x0f) * 4;
    if frame[at] >> 4 != 4 || header < 20 || frame.len() < at + header + 8 {
        return None;
    }
    let mut head = [0; 8];
    head.copy_from_slice(&frame[at + header..at + header + 8]);
    Some(Quoted { src: ipv4_at(frame, at + 12), dst: ipv4_at(frame, at + 16), protocol: frame[at + 9], head })
}

/// Rule 20's quoted datagram in ICMPv6: a 40-byte IPv6 header and 8 bytes after it,
/// inside the frame; its protocol is the next-header field.
fn quoted_ipv6(frame: &[u8], at: usize) -> Option<Quoted> {
    if frame.len() < at + IPV6_HEADER + 8 || frame[at] >> 4 != 6 {
        return None;
    }
    let mut head = [0; 8];
    head.copy_from_slice(&frame[at + IPV6_HEADER..at + IPV6_HEADER + 8]);
    Some(Quoted {
        src: IpAddr::V6(ipv6_at(frame, at + 8)),
        dst: IpAddr::V6(ipv6_at(frame, at + 24)),
        protocol: frame[at + 6],
        head,
    })
}

/// Rule 7.
pub fn tcp_flags_valid(flags: u8) -> bool {
    let judged = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG);
    const VALID: &[u8] = &[
        TCP_SYN,
        TCP_SYN | TCP_URG,
        TCP_SYN | TCP_ACK,
        TCP_RST,
        TCP_RST | TCP_ACK,
        TCP_FIN | TCP_ACK,
        TCP_FIN | TCP_ACK | TCP_URG,
        TCP_ACK,
        TCP_ACK | TCP_URG,
    ];
    VALID.contains(&judged)
}

fn bare_syn(flags: u8) -> bool {
    flags & TCP_SYN != 0 && flags & TCP_ACK == 0
}

// ---------------------------------------------------------------------------------------
// The state: flows and buckets.
// ---------------------------------------------------------------------------------------

/// Rule 8's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub peer: IpAddr,
    pub peer_port: u16,
    pub local_port: u16,
    pub protocol: u8,
}

/// Rule 9's TCP states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynReceived,
    Open,
    FinSeen,
    RstSeen,
}

/// Rule 9's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    HalfOpen,
    Established,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The admitting rule's index (its counter ids, through [`Ids`]).
    pub rule: u32,
    pub origin: Direction,
    pub table: Table,
    /// TCP flows' state; UDP and echo flows are [`TcpState::Open`] and never change.
    pub tcp: TcpState,
    /// The ends heard: the peer's (in), the host's (out).
    pub heard_in: bool,
    pub heard_out: bool,
    /// The host's last outbound segment with ACK: its acknowledgement number and window.
    pub host_ack: Option<(u32, u16)>,
    /// The host's SYN's sequence number plus one.
    pub host_syn_next: Option<u32>,
    pub last_seen_ns: u64,
}

impl Flow {
    fn heard(&mut self, direction: Direction) {
        match direction {
            Direction::In => self.heard_in = true,
            Direction::Out => self.heard_out = true,
        }
    }

    /// Rule 9b's first step: what the host's own segment tells.
    fn host_segment(&mut self, flags: u8, seq: u32, ack: u32, window: u16) {
        if flags & TCP_ACK != 0 {
            self.host_ack = Some((ack, window));
        }
        if flags & TCP_SYN != 0 {
            self.host_syn_next = Some(seq.wrapping_add(1));
        }
    }

    fn acknowledges_syn(&self, ack: u32) -> bool {
        self.host_syn_next == Some(ack)
    }

    /// Rule 9a.
    fn believes(&self, direction: Direction, flags: u8, seq: u32, ack: u32) -> bool {
        match (direction, self.host_ack) {
            (Direction::Out, _) => true,
            (Direction::In, Some((host_ack, window))) => seq.wrapping_sub(host_ack) <= u32::from(window),
            (Direction::In, None) => {
                flags & TCP_RST != 0 && flags & TCP_ACK != 0 && self.acknowledges_syn(ack)
            }
        }
    }

    /// Rule 9b: a segment travelling `direction`; true when it completes the opening.
    fn segment(&mut self, direction: Direction, flags: u8, seq: u32, ack: u32, window: u16) -> bool {
        if direction == Direction::Out {
            self.host_segment(flags, seq, ack, window);
        }
        let (peer_heard, host_heard) = (self.heard_in, self.heard_out);
        if flags & TCP_RST == 0 {
            self.heard(direction);
        }
        let believed = self.believes(direction, flags, seq, ack);
        let (syn, rst, fin, with_ack) =
            (flags & TCP_SYN != 0, flags & TCP_RST != 0, flags & TCP_FIN != 0, flags & TCP_ACK != 0);
        let state = self.tcp;
        if rst {
            if believed {
                self.tcp = TcpState::RstSeen;
            }
        } else if state == TcpState::Open && fin && believed {
            self.tcp = TcpState::FinSeen;
        } else if state == TcpState::RstSeen
            && direction == Direction::Out
            && self.table == Table::Established
        {
            self.tcp = if fin { TcpState::FinSeen } else { TcpState::Open };
        } else if matches!(state, TcpState::SynSent | TcpState::SynReceived) && fin {
            if believed {
                self.tcp = TcpState::FinSeen;
            }
        } else if state == TcpState::SynSent
            && syn
            && with_ack
            && direction != self.origin
            && (direction == Direction::Out || self.acknowledges_syn(ack))
        {
            self.tcp = TcpState::SynReceived;
        } else if state == TcpState::SynReceived && with_ack && !syn {
            let completes = match direction {
                Direction::Out => peer_heard,
                Direction::In => host_heard && (self.host_syn_next.is_none() || self.acknowledges_syn(ack)),
            };
            if completes {
                self.tcp = TcpState::Open;
            }
            return completes;
        }
        false
    }
}

/// A blocklist entry (rule 11a), as `firewall blocklist` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub net: Net,
    /// `CLOCK_MONOTONIC_COARSE` ns; 0: none.
    pub deadline_ns: u64,
    /// Names its two lines.
    pub slot: u32,
}

/// A named list's prefix (rule 11d), as `firewall blocklist` counts it: its list's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub net: Net,
    /// The slot of the list that lasts longest of those holding it: names its two lines.
    pub slot: u32,
    /// That list's deadline (`CLOCK_MONOTONIC_COARSE` ns); 0: none.
    pub deadline_ns: u64,
}

/// Rule 4's datagram of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub protocol: u8,
    pub direction: Direction,
}

/// Rule 24a's entry: a datagram whose first fragment passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub deadline_ns: u64,
    pub counter: u32,
    pub first_len: u16,
}

/// What the model remembers between frames: the flow table, each limited rule's `tat`
/// (absent: 0, a full bucket), each source's of a `per_source` limit likewise, the
/// blocklist, and the datagrams whose first fragment passed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub flows: HashMap<FlowKey, Flow>,
    pub buckets: HashMap<u32, u64>,
    /// (rule index, source: the peer's masked address) → `tat` (rule 21a).
    pub sources: HashMap<(u32, IpAddr), u64>,
    /// (rule index, source) → the keys of the flows it opened under the rule (rule 21a's
    /// `connections`).
    pub connections: HashMap<(u32, IpAddr), Vec<FlowKey>>,
    pub blocks: Vec<Block>,
    /// The named lists' prefixes, each once.
    pub listed: Vec<Listed>,
    pub fragments: HashMap<FragmentKey, Remembered>,
}

impl State {
    /// Rule 11b: `net` is blocked from now on; the flows of the peers inside it end.
    pub fn block(&mut self, net: Net) {
        self.flows.retain(|key, _| !net.contains(key.peer));
    }
}

impl State {
    /// Every flow's last packet `by_ns` earlier (never before 0, as the test's rewrite
    /// of the kernel's entries): time passing, for the timeouts.
    pub fn age(&mut self, by_ns: u64) {
        for flow in self.flows.values_mut() {
            flow.last_seen_ns = flow.last_seen_ns.saturating_sub(by_ns);
        }
        for first in self.fragments.values_mut() {
            first.deadline_ns = first.deadline_ns.saturating_sub(by_ns);
        }
    }
}

/// The flow key of a packet travelling `direction` (rule 8).
pub fn flow_key(direction: Direction, src: IpAddr, dst: IpAddr, transport: &Transport) -> Option<FlowKey> {
    let peer = match direction {
        Direction::In => src,
        Direction::Out => dst,
    };
    let (protocol, src_port, dst_port) = match *transport {
        Transport::Tcp { src_port, dst_port, .. } => (PROTO_TCP, src_port, dst_port),
        Transport::Udp { src_port, dst_port } => (PROTO_UDP, src_port, dst_port),
        Transport::Icmp(Icmp { echo: Some(echo), .. }) => {
            let requests = if echo.request { direction } else { direction.reverse() };
            let peer_port = match requests {
                Direction::In => ECHO_REQUESTS_IN,
                Direction::Out => ECHO_REQUESTS_OUT,
            };
            return Some(FlowKey { peer, peer_port, local_port: echo.id, protocol: icmp_protocol(peer) });
        }
        _ => return None,
    };
    let (peer_port, local_port) = match direction {
        Direction::In => (src_port, dst_port),
        Direction::Out => (dst_port, src_port),
    };
    Some(FlowKey { peer, peer_port, local_port, protocol })
}

/// ICMP's protocol number in the family of `addr`.
fn icmp_protocol(addr: IpAddr) -> u8 {
    icmp_protocol_of(addr.is_ipv6())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Rule 9's timeouts.
pub fn timeout_ns(policy: &Policy, key: &FlowKey, flow: &Flow) -> u64 {
    let c = &policy.conntrack;
    nanos(match (key.protocol, flow.tcp) {
        (PROTO_TCP, TcpState::SynSent) => c.tcp_syn_sent_timeout,
        (PROTO_TCP, TcpState::SynReceived) => c.tcp_syn_recv_timeout,
        (PROTO_TCP, TcpState::Open) => c.tcp_established_timeout,
        (PROTO_TCP, TcpState::FinSeen) => c.tcp_fin_timeout,
        (PROTO_TCP, TcpState::RstSeen) => c.tcp_rst_timeout,
        (PROTO_UDP, _) => c.udp_timeout,
        _ => c.icmp_timeout,
    })
}

fn live(policy: &Policy, state: &State, key: &FlowKey, now_ns: u64) -> Option<Flow> {
    let flow = state.flows.get(key)?;
    (now_ns.saturating_sub(flow.last_seen_ns) <= timeout_ns(policy, key, flow)).then_some(*flow)
}

// ---------------------------------------------------------------------------------------
// The judgement.
// ---------------------------------------------------------------------------------------

/// Judges `frame` travelling `direction` at `now_ns` (`CLOCK_MONOTONIC_COARSE`
/// nanoseconds, the kernel's clock), updating `state` as the filter would update its maps.
/// `ids` numbers the rules and anti-spoof entries, as the loaded filter's do.
pub fn judge(
    policy: &Policy,
    ids: &Ids,
    state: &mut State,
    frame: &[u8],
    direction: Direction,
    now_ns: u64,
) -> Outcome {
    let own = Chain::of(direction);
    match parse(frame, policy.address6.is_some()) {
        Parsed::TruncatedLink | Parsed::TagsTooDeep | Parsed::BadIp { .. } => {
            drop(builtin_counter(own, Builtin::Invalid))
        }
        Parsed::LinkProtocol { .. } => pass(builtin_counter(own, Builtin::NonIp)),
        Parsed::OtherEthertype { .. } => drop(builtin_counter(own, Builtin::OtherEthertype)),
        Parsed::Ipv6 => drop(builtin_counter(own, Builtin::Ipv6)),
        Parsed::Ip(datagram) => {
            let outcome = Judge { policy, ids, state, direction, now_ns }.datagram(&datagram);
            // Rule 24a.
            if let (Verdict::Pass, Piece::First { id, protocol, len }) = (outcome.verdict, datagram.fragment)
            {
                let key = FragmentKey { src: datagram.src, dst: datagram.dst, id, protocol, direction };
                let deadline_ns = now_ns + nanos(policy.conntrack.fragment_timeout);
                state
                    .fragments
                    .insert(key, Remembered { deadline_ns, counter: outcome.counter, first_len: len });
            }
            outcome
        }
    }
}

struct Judge<'a> {
    policy: &'a Policy,
    ids: &'a Ids,
    state: &'a mut State,
    direction: Direction,
    now_ns: u64,
}

impl Judge<'_> {
    fn datagram(&mut self, d: &Datagram) -> Outcome {
        let direction = self.direction;
        let (local, peer) = match direction {
            Direction::In => (d.dst, d.src),
            Direction::Out => (d.src, d.dst),
        };
        let v6 = d.src.is_ipv6();
        let ours = self.policy.is_host_address(local);
        let own = Chain::of(direction);

        // Rule 5a: fragments without headers.
        if !d.fragment.headed() {
            if let Some(counter) = self.blocked(peer) {
                return drop(counter);
            }
            let Piece::Later { id, protocol, offset } = d.fragment else {
                return drop(builtin_counter(own, Builtin::InvalidFragment));
            };
            let key = FragmentKey { src: d.src, dst: d.dst, id, protocol, direction };
            return match self.state.fragments.get(&key) {
                Some(first) if self.now_ns < first.deadline_ns && offset >= first.first_len => {
                    pass(first.counter)
                }
                Some(first) if self.now_ns < first.deadline_ns => {
                    drop(builtin_counter(own, Builtin::InvalidFragment))
                }
                _ => drop(builtin_counter(own, Builtin::FragmentOrphan)),
            };
        }

        // Rule 10a: what IPv6 needs, which passes in rules 12 and 13.
        let (discovery, too_big) = match d.transport {
            Transport::Icmp(Icmp { kind, .. }) if v6 && d.fragment.headed() => (
                (ICMPV6_NEIGHBOUR_DISCOVERY.contains(&kind) && d.hop_limit == 255)
                    || (ICMPV6_LISTENER_DISCOVERY.contains(&kind) && d.hop_limit == 1 && link_local(d.src)),
                kind == ICMPV6_PACKET_TOO_BIG && ours,
            ),
            _ => (false, false),
        };
        let infrastructure = if discovery {
            Some(pass(builtin_counter(own, Builtin::NeighbourDiscovery)))
        } else if too_big {
            Some(pass(builtin_counter(own, Builtin::PacketTooBig)))
        } else {
            None
        };

        // Rule 10b: the DHCP client's exchange, before the flows.
        if self.policy.dhcp
            && d.fragment.headed()
            && let Transport::Udp { src_port, dst_port, .. } = d.transport
            && dhcp_exchange(v6, direction, src_port, dst_port)
        {
            return match self.blocked(peer) {
                Some(counter) => drop(counter),
                None => pass(builtin_counter(own, Builtin::Dhcp)),
            };
        }

        // Rule 11: tracked flows first.
        if ours
            && d.fragment.headed()
            && !matches!(d.transport, Transport::Tcp { flags, .. } if !tcp_flags_valid(flags) || bare_syn(flags))
            && let Some(key) = flow_key(direction, d.src, d.dst, &d.transport)
            && let Some(counter) = self.established(&key, &d.transport)
        {
            return pass(counter);
        }

        // Rule 11a.
        if let Some(counter) = self.blocked(peer) {
            return drop(counter);
        }

        // Rules 12 and 13.
        let chain = match direction {
            Direction::In => {
                if !(discovery && of_the_link(d.src))
                    && let Some(counter) =
                        self.antispoof(&self.policy.antispoof_sources, AntispoofList::Sources, d.src)
                {
                    return drop(counter);
                }
                if let Some(outcome) = infrastructure {
                    return outcome;
                }
                if ours {
                    Chain::Input
                } else {
                    if let Some(counter) = self.antispoof(
                        &self.policy.antispoof_destinations,
                        AntispoofList::Destinations,
                        d.dst,
                    ) {
                        return drop(counter);
                    }
                    Chain::Forward
                }
            }
            Direction::Out => {
                if let Some(outcome) = infrastructure {
                    return outcome;
                }
                if !ours {
                    return drop(builtin_counter(Chain::Output, Builtin::SpoofedSource));
                }
                Chain::Output
            }
        };
        // Rules 14 to 17.
        if let Piece::First { .. } = d.fragment
            && d.transport == Transport::Malformed
        {
            return drop(builtin_counter(chain, Builtin::InvalidFragment));
        }
        match d.transport {
            Transport::Malformed => return drop(builtin_counter(chain, Builtin::Invalid)),
            Transport::Tcp { flags, .. } if !tcp_flags_valid(flags) => {
                return drop(builtin_counter(chain, Builtin::InvalidTcpFlags));
            }
            // Rule 16a.
            Transport::Tcp { src_port: 0, .. }
            | Transport::Tcp { dst_port: 0, .. }
            | Transport::Udp { dst_port: 0, .. } => {
                return drop(builtin_counter(chain, Builtin::Invalid));
            }
            _ => {}
        }
        let policy_line = drop(builtin_counter(chain, Builtin::Policy));
        if chain == Chain::Forward {
            return policy_line;
        }

        // Rule 18.
        let service = match d.transport {
            Transport::Tcp { dst_port, .. } => Service::Port { protocol: PROTO_TCP, port: dst_port },
            Transport::Udp { dst_port, .. } => Service::Port { protocol: PROTO_UDP, port: dst_port },
            // IPv4's ICMP type or IPv6's ICMPv6 type: rule 19 reads it by the peer's family.
            Transport::Icmp(Icmp { kind, .. }) => Service::Icmp { kind },
            Transport::Other | Transport::Malformed => return policy_line,
        };
        // Rules 19 to 22.
        if let Some(rule) = admitting_rule(self.policy, direction, service, peer) {
            let index = self.ids.rule(&rule.name);
            if rule.related && !self.related(&d.transport) {
                return policy_line;
            }
            // Rule 20b.
            if direction == Direction::Out
                && !rule.uids.is_empty()
                && !rule.uids.iter().any(|&(first, last)| (first..=last).contains(&TEST_RUN_UID))
            {
                return policy_line;
            }
            // Rule 20a.
            if !self.policy.conntrack.tcp_loose
                && let Transport::Tcp { flags, .. } = d.transport
                && !(flags & TCP_SYN != 0 && flags & (TCP_ACK | TCP_RST | TCP_FIN) == 0)
            {
                return policy_line;
            }
            // Rule 21a: a trap.
            if let Some(block) = rule.trap {
                self.block_offender(peer, self.now_ns + nanos(block));
                return drop(rule_counter(index, Line::New));
            }
            // Rule 21a.
            if let Some(per_source) = rule.per_source {
                let source = masked(peer, per_source.prefix, per_source.prefix6);
                if let Some(cap) = per_source.connections
                    && let Some(key) = flow_key(direction, d.src, d.dst, &d.transport)
                    && !self.open_one_more(index, source, key, cap)
                {
                    return drop(builtin_counter(chain, Builtin::SourceLimit));
                }
            }
            if let Some(per_source) = rule.per_source
                && let Some(limit) = per_source.limit
            {
                let source = masked(peer, per_source.prefix, per_source.prefix6);
                let tat = self.state.sources.get(&(index, source)).copied().unwrap_or(0);
                let interval = nanos(limit.interval);
                match gcra(tat, self.now_ns, interval, u64::from(limit.burst)) {
                    Some(next) => {
                        self.state.sources.insert((index, source), next);
                    }
                    None => {
                        if let Some(block) = per_source.block {
                            self.block_offender(peer, self.now_ns + nanos(block));
                        }
                        return drop(builtin_counter(chain, Builtin::SourceLimit));
                    }
                }
            }
            if let Some(limit) = rule.limit
                && !self.take_token(index, nanos(limit.interval), u64::from(limit.burst))
            {
                return policy_line;
            }
            if let Some(key) = flow_key(direction, d.src, d.dst, &d.transport)
                && rule.returns
                && !matches!(
                    d.transport,
                    Transport::Icmp(Icmp { echo: Some(Echo { request: false, .. }), .. })
                )
                && !(direction == Direction::Out && self.spoofed(peer))
            {
                self.track(key, index, direction, &d.transport);
            }
            return pass(rule_counter(index, Line::New));
        }
        // Rule 23.
        if let Transport::Tcp { src_port, flags, .. } = d.transport
            && direction == Direction::Out
            && flags & TCP_ACK != 0
            && flags & TCP_SYN == 0
            && let Some(rule) = admitting_rule(
                self.policy,
                Direction::In,
                Service::Port { protocol: PROTO_TCP, port: src_port },
                peer,
            )
            && rule.returns
            && rule.trap.is_none()
            && !self.spoofed(peer)
        {
            let index = self.ids.rule(&rule.name);
            let key = flow_key(direction, d.src, d.dst, &d.transport).expect("TCP has a flow key");
            self.track(key, index, Direction::In, &d.transport);
            return pass(rule_counter(index, Line::Established));
        }
        // Rule 24.
        policy_line
    }

    /// Rule 11 for a packet with a flow key: the line it passes on, if a flow takes it.
    /// Rule 21a's `connections`: whether `source` has fewer than `cap` flows open under
    /// rule `index`, other than `key`'s; if so, `key` is recorded as one it opened.
    fn open_one_more(&mut self, index: u32, source: IpAddr, key: FlowKey, cap: u8) -> bool {
        let (policy, now_ns) = (self.policy, self.now_ns);
        let state = &mut *self.state;
        let opened = state.connections.get(&(index, source)).cloned().unwrap_or_default();
        let open = opened
            .iter()
            .filter(|other| **other != key)
            .filter_map(|other| live(policy, state, other, now_ns))
            .filter(|flow| flow.rule == index && !matches!(flow.tcp, TcpState::FinSeen | TcpState::RstSeen))
            .count();
        if open >= usize::from(cap) {
            return false;
        }
        let opened = state.connections.entry((index, source)).or_default();
        if !opened.contains(&key) {
            opened.push(key);
        }
        true
    }

    fn established(&mut self, key: &FlowKey, transport: &Transport) -> Option<u32> {
        let Some(mut flow) = live(self.policy, self.state, key, self.now_ns) else {
            self.state.flows.remove(key);
            return None;
        };
        let returning = flow.origin != self.direction;
        // Rule 9c: what promotes a half-open flow.
        let heard_both_ways = match transport {
            // Only a reply answers a request.
            Transport::Icmp(icmp) => {
                if !(returning && matches!(icmp.echo, Some(Echo { request: false, .. }))) {
                    return None;
                }
                true
            }
            Transport::Tcp { flags, seq, ack, window, .. } => {
                flow.segment(self.direction, *flags, *seq, *ack, *window)
            }
            _ => returning,
        };
        if heard_both_ways {
            flow.table = Table::Established;
        }
        self.state.flows.insert(*key, Flow { last_seen_ns: self.now_ns, ..flow });
        Some(rule_counter(flow.rule, if returning { Line::Established } else { Line::New }))
    }

    /// Rule 22's (and 23's) new entry: opened in `origin` by this packet.
    fn track(&mut self, key: FlowKey, rule: u32, origin: Direction, transport: &Transport) {
        let mut flow = Flow {
            rule,
            origin,
            table: Table::HalfOpen,
            tcp: TcpState::Open,
            heard_in: false,
            heard_out: false,
            host_ack: None,
            host_syn_next: None,
            last_seen_ns: self.now_ns,
        };
        if let Transport::Tcp { flags, seq, ack, window, .. } = *transport {
            flow.tcp = if flags & TCP_RST != 0 {
                TcpState::RstSeen
            } else if flags & TCP_FIN != 0 {
                TcpState::FinSeen
            } else if flags & TCP_ACK == 0 {
                TcpState::SynSent
            } else {
                TcpState::SynReceived
            };
            if flags & TCP_RST == 0 {
                flow.heard(self.direction);
            }
            if self.direction == Direction::Out {
                flow.host_segment(flags, seq, ack, window);
            }
        }
        if let Some(existing) = self.state.flows.get(&key).copied()
            && existing.table == Table::Established
        {
            let alive = live(self.policy, self.state, &key, self.now_ns).is_some();
            match transport {
                Transport::Icmp(_) if alive => {
                    self.state.flows.insert(key, Flow { rule, last_seen_ns: self.now_ns, ..existing });
                    return;
                }
                Transport::Tcp { flags, .. }
                    if flags & TCP_ACK == 0 && alive && existing.tcp == TcpState::Open =>
                {
                    return;
                }
                _ => {}
            }
        }
        self.state.flows.insert(key, flow);
    }

    /// Rule 11a: the line of the entry that blocks `peer`, if one does (rule 11c: an
    /// offender's, the chain's `source-limit`).
    /// Rule 11d: else the line of the named list whose prefix holds it, the longest.
    fn blocked(&self, peer: IpAddr) -> Option<u32> {
        let entry = self.state.blocks.iter().filter(|b| b.net.contains(peer)).max_by_key(|b| b.net.len);
        let chain = match self.direction {
            Direction::In => Chain::Input,
            Direction::Out => Chain::Output,
        };
        if let Some(entry) = entry.filter(|e| e.deadline_ns == 0 || self.now_ns < e.deadline_ns) {
            return Some(match entry.slot {
                OFFENDER_SLOT => builtin_counter(chain, Builtin::SourceLimit),
                slot => block_counter(slot, self.direction),
            });
        }
        let mut holding: Vec<&Listed> = self.state.listed.iter().filter(|l| l.net.contains(peer)).collect();
        holding.sort_by_key(|l| std::cmp::Reverse(l.net.len));
        let live = holding
            .into_iter()
            .take(LIST_NESTING)
            .find(|l| l.deadline_ns == 0 || self.now_ns < l.deadline_ns)?;
        Some(block_counter(live.slot, self.direction))
    }

    /// Whether rule 12 would drop a packet from `peer`.
    fn spoofed(&self, peer: IpAddr) -> bool {
        self.antispoof(&self.policy.antispoof_sources, AntispoofList::Sources, peer).is_some()
    }

    /// Rule 12: the most specific entry of `list` containing `addr`, as its counter id.
    fn antispoof(&self, list: &[Prefix], which: AntispoofList, addr: IpAddr) -> Option<u32> {
        // Net::contains keeps to the address's family.
        let best = list.iter().filter(|p| Net::from_prefix(p).contains(addr)).max_by_key(|p| p.len)?;
        Some(self.ids.antispoof[&AntispoofEntry { list: which, prefix: *best }])
    }

    /// Rule 20.
    fn related(&self, transport: &Transport) -> bool {
        let Transport::Icmp(Icmp { quoted: Some(q), .. }) = transport else {
            return false;
        };
        // Only what the flow key needs: the ports, or the echo identifier (the quoted
        // 8 bytes hold no TCP flags). The quote is of the error's family (rule 20).
        let v6 = q.src.is_ipv6();
        let inner = match q.protocol {
            PROTO_TCP => Transport::Tcp {
                src_port: be16(&q.head, 0),
                dst_port: be16(&q.head, 2),
                flags: 0,
                seq: be32(&q.head, 4),
                ack: 0,
                window: 0,
            },
            PROTO_UDP => Transport::Udp { src_port: be16(&q.head, 0), dst_port: be16(&q.head, 2) },
            p if p == icmp_protocol_of(v6) => {
                let kind = q.head[0];
                Transport::Icmp(Icmp {
                    kind,
                    code: q.head[1],
                    echo: echo_of(v6, kind, be16(&q.head, 4)),
                    quoted: None,
                })
            }
            _ => return false,
        };
        flow_key(self.direction.reverse(), q.src, q.dst, &inner)
            .is_some_and(|key| live(self.policy, self.state, &key, self.now_ns).is_some())
    }

    /// Rule 21.
    fn take_token(&mut self, rule: u32, interval_ns: u64, burst: u64) -> bool {
        let tat = self.state.buckets.get(&rule).copied().unwrap_or(0);
        let Some(next) = gcra(tat, self.now_ns, interval_ns, burst) else {
            return false;
        };
        self.state.buckets.insert(rule, next);
        true
    }

    /// Rule 11c: `peer` is blocked until `deadline_ns`, as an offender.
    fn block_offender(&mut self, peer: IpAddr, deadline_ns: u64) {
        let net = Net { bits: addr_key(peer), len: 128, v6: peer.is_ipv6() };
        self.state.blocks.retain(|b| b.net != net);
        self.state.blocks.push(Block { net, deadline_ns, slot: OFFENDER_SLOT });
    }
}

/// Rule 21a: the source a `per_source` limit counts `peer` as: its address's first
/// `prefix` bits (IPv4) or `prefix6` (IPv6).
fn masked(peer: IpAddr, prefix: u8, prefix6: u8) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix6)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Rules 21 and 21a: the `tat` after a packet at `now_ns` takes a token from a GCRA whose
/// `tat` is `tat`, one token `interval_ns`, `burst` tokens deep; `None` when it does not
/// conform.
fn gcra(tat: u64, now_ns: u64, interval_ns: u64, burst: u64) -> Option<u64> {
    let start = tat.max(now_ns);
    (start + interval_ns <= now_ns + burst * interval_ns).then_some(start + interval_ns)
}

/// Rule 19: the rule that admits a packet of `service` (for ICMP, the type in the peer's
/// family's numbering) travelling `direction` whose peer is `peer`, the most specific peer
/// winning. A rule's peers are those written and its names' addresses (a policy as
/// `names::fold` gives it them, an address another rule claimed first left out).
pub fn admitting_rule(
    policy: &Policy,
    direction: Direction,
    service: Service,
    peer: IpAddr,
) -> Option<&Rule> {
    policy
        .rules
        .iter()
        .filter(|rule| rule.direction == direction && rule.services.iter().any(|s| offers(*s, service, peer)))
        .filter_map(|rule| {
            rule.all_peers()
                .map(Peer::from_prefix)
                .filter(|p| p.contains(peer))
                .map(|p| p.specificity())
                .max()
                .map(|specificity| (specificity, rule))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, rule)| rule)
}

/// Rule 19: whether a rule's service `offered` is the service `wanted` of a packet whose
/// peer is `peer` (an ICMPv6 type for an IPv6 peer).
fn offers(offered: Service, wanted: Service, peer: IpAddr) -> bool {
    match (offered, wanted) {
        (Service::Icmp { kind }, Service::Icmp { kind: wanted }) if peer.is_ipv6() => {
            icmpv6_type_of(kind) == Some(wanted)
        }
        (Service::Range { protocol, first, last }, Service::Port { protocol: wanted, port }) => {
            protocol == wanted && first <= port && port <= last
        }
        _ => offered == wanted,
    }
}

/// A counter id as the listing names its line: `INPUT invalid`, `OUTPUT ssh-in
/// ESTABLISHED`, `INPUT antispoof source 10.0.0.0/8`, `OUTPUT blocklist #3`.
pub fn counter_name(policy: &Policy, ids: &Ids, id: u32) -> String {
    for chain in Chain::ALL {
        for line in Builtin::ALL {
            if builtin_counter(chain, line) == id {
                return format!("{} {}", chain_name(chain), line.name());
            }
        }
    }
    if id >= BLOCK_COUNTER_BASE {
        let slot = (id - BLOCK_COUNTER_BASE) / 2;
        let chain = if id == block_counter(slot, Direction::In) { Chain::Input } else { Chain::Output };
        return format!("{} blocklist #{slot}", chain_name(chain));
    }
    if let Some((entry, _)) = ids.antispoof.iter().find(|(_, counter)| **counter == id) {
        return format!("INPUT antispoof {entry}");
    }
    for rule in &policy.rules {
        let index = ids.rule(&rule.name);
        let (own, other) = match rule.direction {
            Direction::In => (Chain::Input, Chain::Output),
            Direction::Out => (Chain::Output, Chain::Input),
        };
        if rule_counter(index, Line::New) == id {
            return format!("{} {} NEW", chain_name(own), rule.name);
        }
        if rule_counter(index, Line::Established) == id {
            return format!("{} {} ESTABLISHED", chain_name(other), rule.name);
        }
    }
    format!("counter {id} (no line of this policy)")
}

fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Input => "INPUT",
        Chain::Output => "OUTPUT",
        Chain::Forward => "FORWARD",
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on counter {}", self.verdict, self.counter)
    }
}
