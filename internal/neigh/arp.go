// Package neigh reads the kernel's IPv4 neighbour (ARP) table, which maps
// a client's address to its MAC when neither a lease nor a reservation
// does — in proxy DHCP mode, for instance, where another server leases.
package neigh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
)

// ARPTable reads /proc/net/arp through a file opened once, in the network
// namespace of the thread that opened it: /proc/net follows the reading
// thread's namespace at open time, and request goroutines run on any
// thread.
type ARPTable struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// OpenARPTable opens the ARP table of the calling thread's namespace.
func OpenARPTable() (*ARPTable, error) {
	f, err := os.Open("/proc/thread-self/net/arp")
	if err != nil {
		return nil, fmt.Errorf("open ARP table: %w", err)
	}
	return &ARPTable{f: f, buf: make([]byte, 64<<10)}, nil
}

// MACOf returns the MAC of a complete neighbour entry for ip.
func (t *ARPTable) MACOf(ip netip.Addr) (net.HardwareAddr, bool) {
	if !ip.Is4() {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// A seq_file regenerates its content when read from offset 0.
	n, err := t.f.ReadAt(t.buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false
	}
	return Parse(t.buf[:n], ip)
}

// Close releases the table's file.
func (t *ARPTable) Close() error { return t.f.Close() }

// Lookup reads the calling process's ARP table once; for callers that look
// up rarely and stay in one namespace.
func Lookup(ip netip.Addr) (net.HardwareAddr, bool) {
	if !ip.Is4() {
		return nil, false
	}
	table, err := os.ReadFile("/proc/net/arp")
	if err != nil {
		return nil, false
	}
	return Parse(table, ip)
}

// Parse finds ip in /proc/net/arp text:
//
//	IP address       HW type     Flags       HW address            Mask     Device
//	10.99.0.100      0x1         0x2         52:54:00:12:34:56     *        br0
//
// Only complete entries (flag 0x2) count.
func Parse(table []byte, ip netip.Addr) (net.HardwareAddr, bool) {
	want := []byte(ip.String())
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || !bytes.Equal(f[0], want) {
			continue
		}
		var flags uint32
		if _, err := fmt.Sscanf(string(f[2]), "0x%x", &flags); err != nil || flags&0x2 == 0 {
			continue
		}
		mac, err := net.ParseMAC(string(f[3]))
		if err != nil || len(mac) != 6 {
			continue
		}
		return mac, true
	}
	return nil, false
}
