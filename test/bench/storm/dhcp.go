package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// rawLink is an AF_PACKET socket on a Pi's eth0: a client without an
// address sends from 0.0.0.0 to the broadcast address and hears replies
// sent to its MAC, as firmware does. A BPF filter passes only UDP to port
// 68, so the Pi's TFTP and NFS traffic never queues here.
type rawLink struct {
	f       *os.File
	ifindex int
}

func openRawLink(ns string) (*rawLink, error) {
	var l *rawLink
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := attachFilter(fd); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		l = &rawLink{f: os.NewFile(uintptr(fd), "eth0-packet"), ifindex: ifi.Index}
		return nil
	})
	return l, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// attachFilter: IPv4, UDP, not a fragment, destination port 68.
func attachFilter(fd int) error {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP, SkipFalse: 5},
		bpf.LoadAbsolute{Off: 6, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 3},
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 2, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 68, SkipFalse: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return err
	}
	ins := make([]unix.SockFilter, len(prog))
	for i, p := range prog {
		ins[i] = unix.SockFilter{Code: p.Op, Jt: p.Jt, Jf: p.Jf, K: p.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]})
}

func (l *rawLink) Close() error { return l.f.Close() }

// sendBroadcast sends a DHCP message from 0.0.0.0:68 to 255.255.255.255:67.
func (l *rawLink) sendBroadcast(payload []byte) error {
	pkt := udpPacket(payload)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: l.ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	rc, err := l.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), pkt, 0, to)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

// recv returns the next DHCP payload that arrives before the deadline.
func (l *rawLink) recv(buf []byte, deadline time.Time) ([]byte, error) {
	if err := l.f.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		n, err := l.f.Read(buf)
		if err != nil {
			return nil, err
		}
		p := buf[:n]
		if len(p) < 20 {
			continue
		}
		ihl := int(p[0]&0xf) * 4
		if len(p) < ihl+8 {
			continue
		}
		return p[ihl+8:], nil
	}
}

func udpPacket(payload []byte) []byte {
	total := 20 + 8 + len(payload)
	b := make([]byte, total)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	b[8] = 64
	b[9] = unix.IPPROTO_UDP
	copy(b[12:16], []byte{0, 0, 0, 0})
	copy(b[16:20], []byte{255, 255, 255, 255})
	binary.BigEndian.PutUint16(b[10:], ipChecksum(b[:20]))
	binary.BigEndian.PutUint16(b[20:], 68)
	binary.BigEndian.PutUint16(b[22:], 67)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	// UDP checksum 0: none, allowed over IPv4.
	copy(b[28:], payload)
	return b
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// dhcpProfile is what one DHCP client (a boot ROM, a bootloader, the
// Linux kernel's ipconfig) puts in its requests.
type dhcpProfile struct {
	xid       uint32 // 0 = random per exchange
	request   bool   // sends DHCPREQUEST after the OFFER (the Pi 3 ROMs do not)
	pxe       bool   // a PXE firmware: needs option 60 "PXEClient" in the reply
	prl       []byte // option 55
	vendor    string // option 60, "" = none
	arch      []byte // option 93
	undi      []byte // option 94
	guid      []byte // option 97
	userClass string
}

// lease is what a DHCP exchange gave the client.
type lease struct {
	ip     netip.Addr
	server netip.Addr // option 54
	next   netip.Addr // siaddr
	tftp   string     // option 66
	offers int        // replies heard for this client, retransmissions included
	// slow names the messages that needed retransmission, e.g.
	// "REQUEST x2 (1.02 s)".
	slow []string
}

var errDHCPTimeout = errors.New("no DHCP answer")

// exchange runs DISCOVER (→ REQUEST) with firmware-like retransmission:
// 1 s, then doubling to 4 s, until ctx ends. sent counts the packets.
func (l *rawLink) exchange(ctx context.Context, mac net.HardwareAddr, prof dhcpProfile, sent *int) (lease, error) {
	xid := prof.xid
	if xid == 0 {
		xid = randUint32()
	}
	start := time.Now()
	build := func(typ dhcpv4.MessageType, extra ...dhcpv4.Modifier) []byte {
		mods := []dhcpv4.Modifier{
			dhcpv4.WithHwAddr(mac),
			dhcpv4.WithTransactionID(dhcpv4.TransactionID(binary.BigEndian.AppendUint32(nil, xid))),
			dhcpv4.WithMessageType(typ),
		}
		if len(prof.prl) > 0 {
			codes := make([]dhcpv4.OptionCode, len(prof.prl))
			for i, c := range prof.prl {
				codes[i] = dhcpv4.GenericOptionCode(c)
			}
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptParameterRequestList(codes...)))
		}
		for code, v := range map[uint8][]byte{60: []byte(prof.vendor), 93: prof.arch, 94: prof.undi, 97: prof.guid} {
			if len(v) > 0 {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), v)))
			}
		}
		m, _ := dhcpv4.New(append(mods, extra...)...)
		m.NumSeconds = uint16(time.Since(start) / time.Second)
		return m.ToBytes()
	}
	var out lease
	wait := func(want dhcpv4.MessageType, pkt []byte) (m *dhcpv4.DHCPv4, err error) {
		buf := make([]byte, 2048)
		rto := time.Second
		t0, sends := time.Now(), 0
		defer func() {
			if sends > 1 {
				what := "DISCOVER"
				if want == dhcpv4.MessageTypeAck {
					what = "REQUEST"
				}
				out.slow = append(out.slow, fmt.Sprintf("%s x%d (%.2f s)", what, sends, time.Since(t0).Seconds()))
			}
		}()
		for {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w (%d sent): %v", errDHCPTimeout, *sent, err)
			}
			if err := l.sendBroadcast(pkt); err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			*sent++
			sends++
			deadline := time.Now().Add(rto)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			for {
				p, err := l.recv(buf, deadline)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if err != nil {
					return nil, err
				}
				m, err := dhcpv4.FromBytes(p)
				if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || !bytes.Equal(m.ClientHWAddr, mac) ||
					binary.BigEndian.Uint32(m.TransactionID[:]) != xid {
					continue
				}
				out.offers++
				if m.MessageType() == dhcpv4.MessageTypeNak {
					return nil, errors.New("DHCPNAK")
				}
				if m.MessageType() != want {
					continue
				}
				// A PXE firmware ignores an answer without the PXE vendor
				// class (a plain DHCP offer); it waits for one that has it.
				if prof.pxe && string(m.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" {
					continue
				}
				return m, nil
			}
			rto = min(rto*2, 4*time.Second)
		}
	}
	offer, err := wait(dhcpv4.MessageTypeOffer, build(dhcpv4.MessageTypeDiscover))
	if err != nil {
		return out, fmt.Errorf("DISCOVER: %w", err)
	}
	ack := offer
	if prof.request {
		ack, err = wait(dhcpv4.MessageTypeAck, build(dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier()))))
		if err != nil {
			return out, fmt.Errorf("REQUEST: %w", err)
		}
	}
	var ok bool
	if out.ip, ok = netip.AddrFromSlice(ack.YourIPAddr.To4()); !ok || !out.ip.IsValid() || out.ip.IsUnspecified() {
		return out, errors.New("reply without an address")
	}
	out.server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	out.next, _ = netip.AddrFromSlice(ack.ServerIPAddr.To4())
	out.tftp = ack.TFTPServerName()
	return out, nil
}
