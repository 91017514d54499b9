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
	oob sync.Map // oobKey → []byte, marshalled control messages (immutable)
}

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
	return &dhcpConn{udp: udp, pc: pc}, nil
}

// message builds a datagram of b to dst; ifIndex (0 = routing decides)
// picks the outgoing interface, src (may be invalid) the source address.
func (c *dhcpConn) message(b []byte, dst netip.AddrPort, ifIndex int, src netip.Addr) ipv4.Message {
	m := ipv4.Message{Buffers: [][]byte{b}, Addr: net.UDPAddrFromAddrPort(dst)}
	if ifIndex != 0 || src.IsValid() {
		k := oobKey{ifIndex, src}
		if v, ok := c.oob.Load(k); ok {
			m.OOB = v.([]byte)
		} else {
			cm := ipv4.ControlMessage{IfIndex: ifIndex}
			if src.IsValid() {
				cm.Src = src.AsSlice()
			}
			m.OOB = cm.Marshal()
			c.oob.Store(k, m.OOB)
		}
	}
	return m
}

func (c *dhcpConn) close() { c.udp.Close() }
