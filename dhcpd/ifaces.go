package dhcpd

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifaceInfo is one interface of the network namespace the server listens in.
type ifaceInfo struct {
	index    int
	name     string
	mac      net.HardwareAddr
	up       bool
	loopback bool
	addrs    []netip.Prefix // IPv4 only
}

func (i *ifaceInfo) has(a netip.Addr) bool {
	for _, p := range i.addrs {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

// ifaceTable knows the interfaces and their IPv4 addresses. It asks the
// kernel over a netlink socket opened in Listen: net.Interfaces would ask
// the namespace of whatever thread the goroutine runs on, which in a test
// (testnet.NS.Do) is not the namespace the server's sockets live in.
type ifaceTable struct {
	fd      int
	mu      sync.Mutex // serialises netlink dumps
	seq     uint32
	last    time.Time
	current atomic.Pointer[map[int]*ifaceInfo]
}

func openIfaceTable() (*ifaceTable, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	t := &ifaceTable{fd: fd}
	if err := t.refresh(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return t, nil
}

func (t *ifaceTable) close() { unix.Close(t.fd) }

// get returns the interface with index, re-reading the kernel's table (at
// most once a second) when it is unknown.
func (t *ifaceTable) get(index int) *ifaceInfo {
	if m := t.current.Load(); m != nil {
		if i := (*m)[index]; i != nil {
			return i
		}
	}
	t.mu.Lock()
	stale := time.Since(t.last) > time.Second
	t.mu.Unlock()
	if stale {
		_ = t.refresh()
		if m := t.current.Load(); m != nil {
			return (*m)[index]
		}
	}
	return nil
}

func (t *ifaceTable) byName(name string) *ifaceInfo {
	for _, i := range t.all() {
		if i.name == name {
			return i
		}
	}
	return nil
}

func (t *ifaceTable) all() map[int]*ifaceInfo {
	if m := t.current.Load(); m != nil {
		return *m
	}
	return nil
}

// refresh dumps links and addresses from the kernel.
func (t *ifaceTable) refresh() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = time.Now()
	links, err := t.dump(unix.RTM_GETLINK)
	if err != nil {
		return fmt.Errorf("netlink link dump: %w", err)
	}
	m := make(map[int]*ifaceInfo)
	for _, msg := range links {
		if msg.Header.Type != unix.RTM_NEWLINK || len(msg.Data) < unix.SizeofIfInfomsg {
			continue
		}
		info := (*unix.IfInfomsg)(unsafePointer(msg.Data))
		i := &ifaceInfo{
			index:    int(info.Index),
			up:       info.Flags&unix.IFF_UP != 0,
			loopback: info.Flags&unix.IFF_LOOPBACK != 0,
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&msg)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				i.name = string(trimNUL(a.Value))
			case unix.IFLA_ADDRESS:
				i.mac = append(net.HardwareAddr(nil), a.Value...)
			}
		}
		m[i.index] = i
	}
	addrs, err := t.dump(unix.RTM_GETADDR)
	if err != nil {
		return fmt.Errorf("netlink address dump: %w", err)
	}
	for _, msg := range addrs {
		if msg.Header.Type != unix.RTM_NEWADDR || len(msg.Data) < unix.SizeofIfAddrmsg {
			continue
		}
		am := (*unix.IfAddrmsg)(unsafePointer(msg.Data))
		if am.Family != unix.AF_INET {
			continue
		}
		i := m[int(am.Index)]
		if i == nil {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&msg)
		if err != nil {
			continue
		}
		var local, addr []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = a.Value
			case unix.IFA_ADDRESS:
				addr = a.Value
			}
		}
		if local == nil {
			local = addr
		}
		if len(local) == 4 {
			i.addrs = append(i.addrs, netip.PrefixFrom(netip.AddrFrom4([4]byte(local)), int(am.Prefixlen)))
		}
	}
	t.current.Store(&m)
	return nil
}

func (t *ifaceTable) dump(typ uint16) ([]syscall.NetlinkMessage, error) {
	t.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofRtGenmsg)
	hdr := (*unix.NlMsghdr)(unsafePointer(req))
	hdr.Len = uint32(len(req))
	hdr.Type = typ
	hdr.Flags = unix.NLM_F_DUMP | unix.NLM_F_REQUEST
	hdr.Seq = t.seq
	req[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC
	if err := unix.Sendto(t.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(t.fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != t.seq {
				continue // a late answer to an earlier dump
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				return nil, fmt.Errorf("netlink error answer")
			}
			m.Data = append([]byte(nil), m.Data...)
			out = append(out, m)
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// unsafePointer views the start of b as a kernel struct; b comes from make
// or append, so it is suitably aligned.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
