package tftpd

import (
	"net"
	"net/netip"
)

// Neighbors maps a client's IPv4 address to its MAC, as the kernel's
// neighbour (ARP) table knows it. A client that just sent us a request has
// usually resolved our address first, which leaves its own entry behind.
type Neighbors interface {
	MACOf(ip netip.Addr) (net.HardwareAddr, bool)
}
