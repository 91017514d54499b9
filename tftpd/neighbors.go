package tftpd

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

// Neighbors maps a client's IPv4 address to its MAC, as the kernel's
// neighbour (ARP) table knows it. A client that just sent us a request has
// usually resolved our address first, which leaves its own entry behind.
type Neighbors interface {
	MACOf(ip netip.Addr) (net.HardwareAddr, bool)
}

// procARP reads /proc/net/arp through a file opened once, in the network
// namespace the server listens in: /proc/net follows the reading thread's
// namespace at open time, and request goroutines run on any thread.
type procARP struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// openProcARP opens the ARP table of the calling thread's namespace.
func openProcARP() (*procARP, error) {
	f, err := os.Open("/proc/thread-self/net/arp")
	if err != nil {
		return nil, fmt.Errorf("open ARP table: %w", err)
	}
	return &procARP{f: f, buf: make([]byte, 64<<10)}, nil
}

func (p *procARP) MACOf(ip netip.Addr) (net.HardwareAddr, bool) {
	if !ip.Is4() {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A seq_file regenerates its content when read from offset 0.
	n, err := p.f.ReadAt(p.buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false
	}
	return parseARP(p.buf[:n], ip)
}

func (p *procARP) Close() error { return p.f.Close() }

// parseARP finds ip in /proc/net/arp text:
//
//	IP address       HW type     Flags       HW address            Mask     Device
//	10.99.0.100      0x1         0x2         52:54:00:12:34:56     *        br0
//
// Only complete entries (flag 0x2) count.
func parseARP(table []byte, ip netip.Addr) (net.HardwareAddr, bool) {
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
