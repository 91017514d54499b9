package dhcpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// dhcpConn is one UDP socket on all addresses that learns each packet's
// ingress interface from IP_PKTINFO and sends each broadcast reply out of
// that interface (Tinkerbell smee's pattern), so one socket serves a
// multi-homed host.
type dhcpConn struct {
	udp *net.UDPConn
	pc  *ipv4.PacketConn
	// out sends replies: pc, or a test's failing writer.
	out batchWriter
	// Per-destination values every reply needs, made once: control
	// messages by (interface, source) and socket addresses by destination
	// (a relay's, the broadcast, a renewing client's). Both are immutable
	// once stored; building them per reply cost three allocations.
	mu    sync.RWMutex
	oob   map[oobKey][]byte
	addrs map[netip.AddrPort]*net.UDPAddr
}

// maxCachedAddrs bounds the address cache: renewing clients are
// answered at their own addresses, so a large network would grow it.
const maxCachedAddrs = 4096

type oobKey struct {
	ifIndex int
	src     netip.Addr
}

func listenDHCP(port int) (*dhcpConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_BROADCAST, unix.SO_REUSEADDR} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			// Room for a burst of a few thousand requests; FORCE needs
			// CAP_NET_ADMIN, the plain call is capped by rmem_max.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen on UDP port %d: %w", port, err)
	}
	udp := c.(*net.UDPConn)
	pc := ipv4.NewPacketConn(udp)
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		udp.Close()
		return nil, fmt.Errorf("enable packet info on port %d: %w", port, err)
	}
	return &dhcpConn{udp: udp, pc: pc, out: pc, oob: make(map[oobKey][]byte), addrs: make(map[netip.AddrPort]*net.UDPAddr)}, nil
}

// message builds a datagram of bufs (one buffer, owned by the caller) to dst; ifIndex (0 = routing decides)
// picks the outgoing interface, src (may be invalid) the source address.
func (c *dhcpConn) message(bufs [][]byte, dst netip.AddrPort, ifIndex int, src netip.Addr) ipv4.Message {
	k := oobKey{ifIndex, src}
	withOOB := ifIndex != 0 || src.IsValid()
	c.mu.RLock()
	addr := c.addrs[dst]
	oob := c.oob[k]
	c.mu.RUnlock()
	if addr != nil && (oob != nil || !withOOB) {
		return ipv4.Message{Buffers: bufs, Addr: addr, OOB: oob}
	}
	if addr == nil {
		addr = net.UDPAddrFromAddrPort(dst)
	}
	if withOOB && oob == nil {
		cm := ipv4.ControlMessage{IfIndex: ifIndex}
		if src.IsValid() {
			cm.Src = src.AsSlice()
		}
		oob = cm.Marshal()
	}
	c.mu.Lock()
	if len(c.addrs) >= maxCachedAddrs {
		clear(c.addrs)
	}
	c.addrs[dst] = addr
	if withOOB {
		c.oob[k] = oob
	}
	c.mu.Unlock()
	return ipv4.Message{Buffers: bufs, Addr: addr, OOB: oob}
}

func (c *dhcpConn) close() { c.udp.Close() }
