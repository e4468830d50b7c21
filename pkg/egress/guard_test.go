package egress

import (
	"errors"
	"net/netip"
	"testing"
)

func TestBlocked(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		// Public addresses are allowed.
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.215.14", false},
		{"2606:4700::1111", false},
		{"2001:4860:4860::8888", false},
		{"::ffff:8.8.8.8", false},   // IPv4-mapped public
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", false},  // 6to4 of 8.8.8.8
		{"100.63.255.255", false},   // just below CGNAT
		{"100.128.0.0", false},      // just above CGNAT
		{"172.15.255.255", false},   // just below 172.16/12
		{"172.32.0.0", false},       // just above 172.16/12
		{"198.17.255.255", false},   // just below benchmarking
		{"198.20.0.0", false},       // just above benchmarking
		{"223.255.255.255", false},  // just below multicast
		{"2001:200::1", false},      // just above 2001::/23 (WIDE)
		{"168.63.129.17", false},    // next to Azure WireServer

		// IPv4 non-global ranges.
		{"0.0.0.0", true},         // unspecified
		{"0.1.2.3", true},         // 0.0.0.0/8
		{"127.0.0.1", true},       // loopback
		{"127.255.255.254", true}, // loopback /8
		{"10.0.0.1", true},        // RFC 1918
		{"172.16.0.1", true},      // RFC 1918
		{"172.31.255.255", true},  // RFC 1918
		{"192.168.1.1", true},     // RFC 1918
		{"169.254.169.254", true}, // link-local, cloud metadata
		{"169.254.0.1", true},     // link-local
		{"100.64.0.1", true},      // CGNAT
		{"100.100.100.200", true}, // CGNAT, Alibaba metadata
		{"100.127.255.255", true}, // CGNAT
		{"192.0.0.192", true},     // IETF assignments, Oracle metadata
		{"192.0.2.1", true},       // TEST-NET-1
		{"198.51.100.7", true},    // TEST-NET-2
		{"203.0.113.9", true},     // TEST-NET-3
		{"192.88.99.1", true},     // 6to4 relay anycast
		{"198.18.0.1", true},      // benchmarking
		{"198.19.255.255", true},  // benchmarking
		{"224.0.0.1", true},       // multicast
		{"239.255.255.250", true}, // multicast (SSDP)
		{"240.0.0.1", true},       // reserved
		{"255.255.255.255", true}, // broadcast
		{"168.63.129.16", true},   // Azure WireServer

		// IPv4-mapped IPv6 forms.
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:0.0.0.0", true},

		// IPv6 non-global ranges.
		{"::", true},                 // unspecified
		{"::1", true},                // loopback
		{"::127.0.0.1", true},        // IPv4-compatible (deprecated)
		{"::ffff:0:7f00:1", true},    // IPv4-translated
		{"fe80::1", true},            // link-local
		{"fe80::1%eth0", true},       // link-local with zone
		{"febf:ffff::1", true},       // link-local /10 end
		{"fec0::1", true},            // site-local (deprecated)
		{"fc00::1", true},            // unique-local
		{"fd00::1", true},            // unique-local
		{"fd00:ec2::254", true},      // unique-local, AWS metadata
		{"ff02::1", true},            // multicast
		{"ff05::1:3", true},          // multicast
		{"100::1", true},             // discard-only
		{"64:ff9b::7f00:1", true},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 of 169.254.169.254
		{"64:ff9b::a00:1", true},     // NAT64 of 10.0.0.1
		{"64:ff9b:1::808:808", true}, // local-use NAT64 (RFC 8215)
		{"2002:7f00:1::1", true},     // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", true},  // 6to4 of 169.254.169.254
		{"2001::1", true},            // Teredo
		{"2001:2::1", true},          // benchmarking
		{"2001:10::1", true},         // ORCHID
		{"2001:db8::1", true},        // documentation
		{"3fff::1", true},            // documentation (RFC 9637)
		{"4000::1", true},            // outside 2000::/3, unallocated
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		if got := Blocked(ip); got != tt.want {
			t.Errorf("Blocked(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if !Blocked(netip.Addr{}) {
		t.Errorf("Blocked(netip.Addr{}) = false, want true")
	}
}

func TestControl(t *testing.T) {
	tests := []struct {
		network, address string
		blocked          bool
	}{
		{"tcp4", "8.8.8.8:443", false},
		{"tcp6", "[2606:4700::1111]:443", false},
		{"tcp4", "127.0.0.1:80", true},
		{"tcp6", "[::1]:80", true},
		{"tcp6", "[fe80::1%eth0]:80", true},
		{"tcp6", "[::ffff:169.254.169.254]:80", true},
		{"tcp", "not-an-address", true},
	}
	for _, tt := range tests {
		err := control(tt.network, tt.address, nil)
		if got := errors.Is(err, ErrBlockedAddress); got != tt.blocked || (err != nil) != tt.blocked {
			t.Errorf("control(%q, %q) = %v, want blocked %v", tt.network, tt.address, err, tt.blocked)
		}
	}
}
