package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrBlockedAddress is wrapped in Result.Err when the target is, or resolves to,
// an address Blocked refuses. Test with errors.Is.
var ErrBlockedAddress = errors.New("blocked non-public address")

// blockedV4 lists the IPv4 ranges that are not globally reachable or that
// reach infrastructure rather than a receiver (IANA special-purpose registry).
var blockedV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),        // "this network"; 0.0.0.0 reaches localhost on Linux
	netip.MustParsePrefix("10.0.0.0/8"),       // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),    // CGNAT (also Alibaba metadata 100.100.100.200)
	netip.MustParsePrefix("127.0.0.0/8"),      // loopback
	netip.MustParsePrefix("169.254.0.0/16"),   // link-local, cloud metadata 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),    // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),     // IETF protocol assignments (Oracle metadata 192.0.0.192)
	netip.MustParsePrefix("192.0.2.0/24"),     // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),   // deprecated 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),   // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),    // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"),  // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),   // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),      // multicast
	netip.MustParsePrefix("240.0.0.0/4"),      // reserved, incl. broadcast 255.255.255.255
	netip.MustParsePrefix("168.63.129.16/32"), // Azure WireServer: public-looking, host-only, a known SSRF target
}

var (
	// Only 2000::/3 is allocated global unicast; everything outside it (::/8
	// with loopback, unspecified and IPv4-compatible forms, 100::/64 discard,
	// fc00::/7 unique-local incl. AWS metadata fd00:ec2::254, fe80::/10
	// link-local, fec0::/10 site-local, ff00::/8 multicast) is refused, except
	// the NAT64 well-known prefix, which is judged by the IPv4 it embeds.
	globalV6  = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	// Non-global ranges inside 2000::/3.
	blockedV6 = []netip.Prefix{
		netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ORCHID
		netip.MustParsePrefix("2001:db8::/32"), // documentation
		netip.MustParsePrefix("3fff::/20"),     // documentation (RFC 9637)
	}
)

// Blocked reports whether ip is refused for webhook delivery: loopback,
// private, link-local (cloud metadata included), CGNAT, unique-local,
// unspecified, multicast, broadcast, reserved, documentation and benchmarking
// ranges, and IPv6 forms that embed such an IPv4 address (IPv4-mapped, NAT64
// 64:ff9b::/96, 6to4 2002::/16). An invalid address is blocked. It judges the
// address only; Client applies it to every address it actually connects to.
func Blocked(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	// A zoned address never matches a netip.Prefix; the zone only matters
	// for link-local addresses, which are blocked anyway.
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		return blocked4(ip)
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return blocked4(netip.AddrFrom4([4]byte(b[12:16])))
	}
	if !globalV6.Contains(ip) {
		return true
	}
	if sixToFour.Contains(ip) {
		b := ip.As16()
		return blocked4(netip.AddrFrom4([4]byte(b[2:6])))
	}
	for _, p := range blockedV6 {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func blocked4(ip netip.Addr) bool {
	for _, p := range blockedV4 {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// control is the net.Dialer Control hook: it runs after DNS resolution, once
// per address the dialer is about to connect to, so a hostname that resolves
// (or re-resolves, DNS rebinding) to an internal address is refused before
// connect(2). It fails closed on an address it cannot parse.
func control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable %s address %q", ErrBlockedAddress, network, address)
	}
	if Blocked(ap.Addr()) {
		return ErrBlockedAddress
	}
	return nil
}
