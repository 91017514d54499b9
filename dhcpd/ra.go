package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// RAResponder answers IPv6 router solicitations on the boot interfaces
// with one router advertisement that says "no router here" (router
// lifetime 0, no prefix). iPXE waits about 13 s for IPv6 autoconfiguration
// before it uses its DHCPv4 result unless an RA arrives; this one settles
// it at once and changes nothing for hosts that use IPv6 elsewhere (a
// lifetime of 0 never makes the controller a default router).
type RAResponder struct {
	interfaces []string
	log        *slog.Logger

	conn    *icmp.PacketConn
	pc      *ipv6.PacketConn
	ifaces  map[int]net.HardwareAddr // served interfaces by index
	mu      sync.Mutex
	answers int
}

// NewRAResponder makes a responder for the named interfaces (at least one).
func NewRAResponder(interfaces []string, log *slog.Logger) (*RAResponder, error) {
	if len(interfaces) == 0 {
		return nil, fmt.Errorf("%w: the RA responder needs interfaces", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RAResponder{interfaces: append([]string(nil), interfaces...), log: log}, nil
}

// Name names the component for the controller.
func (r *RAResponder) Name() string { return "ra" }

// Listen opens a raw ICMPv6 socket in the calling thread's network
// namespace and joins all-routers on each interface. The interfaces need
// IPv6 enabled (a link-local address to answer from).
func (r *RAResponder) Listen() error {
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("ra: raw ICMPv6 socket: %w", err)
	}
	pc := c.IPv6PacketConn()
	fail := func(err error) error {
		c.Close()
		return err
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := pc.SetICMPFilter(&f); err != nil {
		return fail(fmt.Errorf("ra: ICMPv6 filter: %w", err))
	}
	if err := pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true); err != nil {
		return fail(fmt.Errorf("ra: control messages: %w", err))
	}
	// Neighbour discovery packets must carry hop limit 255 (RFC 4861).
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return fail(fmt.Errorf("ra: hop limit: %w", err))
	}
	if err := pc.SetHopLimit(255); err != nil {
		return fail(fmt.Errorf("ra: hop limit: %w", err))
	}
	r.ifaces = make(map[int]net.HardwareAddr)
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2")}
	for _, name := range r.interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fail(fmt.Errorf("ra: interface %q: %w", name, err))
		}
		if err := pc.JoinGroup(ifc, allRouters); err != nil {
			// IPv6 is off on it: nothing to answer there, but iPXE
			// clients on it will wait for IPv6 before booting.
			r.log.Warn("cannot answer IPv6 router solicitations: iPXE clients on this interface wait ~13 s before DHCPv4",
				"interface", name, "error", err)
			continue
		}
		r.ifaces[ifc.Index] = ifc.HardwareAddr
	}
	r.conn, r.pc = c, pc
	return nil
}

// Run is Listen then Serve.
func (r *RAResponder) Run(ctx context.Context) error {
	if err := r.Listen(); err != nil {
		return err
	}
	return r.Serve(ctx)
}

// Serve answers solicitations until ctx is cancelled.
func (r *RAResponder) Serve(ctx context.Context) error {
	if r.pc == nil {
		return errors.New("ra: Serve before Listen")
	}
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := r.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		if cm == nil || n < 8 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || buf[1] != 0 || cm.HopLimit != 255 {
			continue
		}
		mac, ok := r.ifaces[cm.IfIndex]
		if !ok {
			continue
		}
		// No zone: a zone name is resolved in the calling thread's network
		// namespace, which need not be the socket's; IfIndex scopes it.
		dst := &net.IPAddr{IP: net.IPv6linklocalallnodes}
		if a, ok := src.(*net.IPAddr); ok && !a.IP.IsUnspecified() {
			dst = &net.IPAddr{IP: a.IP}
		}
		ra := routerAdvertisement(mac)
		if _, err := r.pc.WriteTo(ra, &ipv6.ControlMessage{IfIndex: cm.IfIndex, HopLimit: 255}, dst); err != nil {
			r.log.Debug("router advertisement not sent", "to", dst.String(), "error", err)
			continue
		}
		r.mu.Lock()
		r.answers++
		r.mu.Unlock()
		r.log.Debug("answered router solicitation", "from", dst.String())
	}
}

// Answers is the number of advertisements sent.
func (r *RAResponder) Answers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers
}

// routerAdvertisement: hop limit unspecified, no M/O flags, router
// lifetime 0, no prefix; the source link-layer address option when known.
// The kernel fills in the ICMPv6 checksum.
func routerAdvertisement(mac net.HardwareAddr) []byte {
	b := []byte{byte(ipv6.ICMPTypeRouterAdvertisement), 0, 0, 0, // type, code, checksum
		0, 0, 0, 0, // cur hop limit, flags, router lifetime
		0, 0, 0, 0, // reachable time
		0, 0, 0, 0, // retrans timer
	}
	if len(mac) == 6 {
		b = append(b, 1, 1)
		b = append(b, mac...)
	}
	return b
}
