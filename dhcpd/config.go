package dhcpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Mode says who owns addresses on the boot network.
type Mode string

const (
	// ModeFull: pictl hands out addresses (reservations and pools) and
	// answers every client its policy allows.
	ModeFull Mode = "full"
	// ModeProxy: another server hands out addresses; pictl answers only
	// PXE clients it may boot, with the PXE options and no address.
	ModeProxy Mode = "proxy"
)

// DiscoveryPolicy says what happens to a booting client that Nodes does not
// know.
type DiscoveryPolicy string

const (
	// DiscoveryRecord records it (Store.Discovered) and does not boot it.
	DiscoveryRecord DiscoveryPolicy = "record"
	// DiscoveryBoot records it and boots it like a known node.
	DiscoveryBoot DiscoveryPolicy = "boot"
	// DiscoveryIgnore drops its packets without a trace.
	DiscoveryIgnore DiscoveryPolicy = "ignore"
)

// Node is what dhcpd needs to know about a node of the cluster.
type Node struct {
	Name string
	// IP is the node's reserved address (full mode); invalid = none, the
	// node gets a pool address.
	IP netip.Addr
	// Netboot says the node may boot from pictl; false answers its boot
	// firmware with silence (it then tries its next boot device).
	Netboot bool
	// RootPath is sent as option 17 to the node's OS/initramfs DHCP client;
	// "" means "SERVER:/nodes/NAME" with the server's address.
	RootPath string
}

// Nodes looks up the cluster's nodes. It is called on every packet, so the
// caller can swap its snapshot at any time; implementations must be safe
// for concurrent use and fast (a map lookup).
type Nodes interface {
	ByMAC(mac net.HardwareAddr) (Node, bool)
	// ByIP returns the node the address is reserved for, so the pool never
	// hands a reserved address to another client.
	ByIP(ip netip.Addr) (Node, bool)
}

// Range is an inclusive range of IPv4 addresses.
type Range struct {
	First, Last netip.Addr
}

// IsZero reports whether the range is unset.
func (r Range) IsZero() bool { return !r.First.IsValid() && !r.Last.IsValid() }

// Size is the number of addresses in the range.
func (r Range) Size() int {
	if r.IsZero() {
		return 0
	}
	return int(addrToU32(r.Last)-addrToU32(r.First)) + 1
}

// Subnet is one IPv4 network dhcpd hands addresses out on (full mode).
type Subnet struct {
	// Network is the subnet, e.g. 10.99.0.0/24; it gives option 1 and
	// selects the subnet: a relayed packet's giaddr lies in it, or (not
	// relayed) the ingress interface has an address in it.
	Network netip.Prefix
	// Interface, if set, selects this subnet for packets arriving on that
	// interface regardless of its addresses.
	Interface string
	// ServerIP is this subnet's server identifier (option 54, siaddr, TFTP
	// and NFS server); default: the ingress interface's address in
	// Network, else Config.ServerIP.
	ServerIP netip.Addr
	// Range is the dynamic pool; zero = reservations only.
	Range  Range
	Router netip.Addr
	DNS    []netip.Addr
	Domain string
}

// Config is dhcpd's configuration. The zero value of every field but Mode
// and Subnets (full mode) means its documented default.
type Config struct {
	Mode Mode
	// Interfaces to serve (names); empty = every interface but loopback.
	Interfaces []string
	// ServerIP is the controller's address, used where a subnet gives none
	// and the ingress interface has no IPv4 address in it (relayed
	// networks, proxy mode on an interface with several addresses).
	ServerIP netip.Addr
	// Subnets: full mode needs at least one.
	Subnets []Subnet

	// LeaseTime (default 1 h) is what a full-mode lease lasts.
	LeaseTime time.Duration
	// OfferHold (default 30 s) keeps an offered address for its client.
	OfferHold time.Duration
	// DeclineHold (default 1 h) keeps a DHCPDECLINEd address out of the pool.
	DeclineHold time.Duration
	// LeaseReuse: a client asking again for the lease it was granted less
	// than LeaseReuse × LeaseTime ago gets that lease back with its
	// remaining time and nothing is written (Kea's cache-threshold). A Pi
	// does two or three DORAs within a minute of power-on (firmware,
	// kernel, OS). Default 0.25; negative turns reuse off.
	LeaseReuse float64

	// Discovery is the policy for unknown booting clients (default record).
	Discovery DiscoveryPolicy
	// MaxDiscovered caps the discovered-client records (default 1024);
	// past it the least recently seen go. DiscoveredExpiry (default 7
	// days) removes clients not seen for that long.
	MaxDiscovered    int
	DiscoveredExpiry time.Duration
	// IgnoreOthers (full mode) gives no address to clients that are neither
	// nodes nor booting firmware (laptops, phones). Default: serve them.
	IgnoreOthers bool

	// ReplyDelay holds the OFFER (and proxy reply) back per client class;
	// nil = DefaultReplyDelay (2 s for the b8:27:eb Pi 3 ROMs: a DHCP reply
	// and a TFTP reply within ~2 s can wedge a Pi 3). An empty, non-nil map
	// means no delay.
	ReplyDelay map[Class]time.Duration

	// IPXEBootFile is the boot file for iPXE (default "boot.ipxe").
	IPXEBootFile string
	// PXEBootFiles maps option 93 arch → boot file for other PXE ROMs, to
	// chain-load iPXE (nil = DefaultPXEBootFiles). An arch not listed gets
	// no answer.
	PXEBootFiles map[uint16]string

	// RateLimit is the sustained packets per second accepted from one MAC
	// (default 5), RateBurst the burst (default 20); RateLimit < 0 turns
	// the limiter off.
	RateLimit float64
	RateBurst int

	// SkipProbe turns off the start-up probe for other DHCP servers (full
	// mode sends one DISCOVER per interface and warns about every answer).
	SkipProbe bool
	// ProbeTimeout is how long the probe listens (default 3 s).
	ProbeTimeout time.Duration

	// Port is the server port (default 67); ProxyPort the PXE boot server
	// port proxy mode also answers on (default 4011, -1 = off).
	Port      int
	ProxyPort int
	// Workers is the number of goroutines reading the socket (default 1:
	// reads are batched, and a second reader measured 9 % more CPU per
	// lease for no more throughput on two cores).
	Workers int
	// CommitLinger: under load (4 or more leases waiting), the group
	// commit waits up to this long for more before writing; every commit
	// costs an fdatasync or two, so this trades up to CommitLinger of ACK
	// latency for CPU. An idle server commits at once. Default 1 ms,
	// negative = never wait.
	CommitLinger time.Duration
	// DirectCommit makes every group commit a bbolt transaction (two
	// fdatasyncs before the ACKs). By default a commit appends the leases
	// to a journal next to the database (runtime.db.dhcpd-journal) with
	// one fdatasync, and the records move into bbolt in the background,
	// every 250 ms under load: as durable, less CPU and ACK latency (see
	// journal.go).
	DirectCommit bool
	// ReadCoalesce: under load (the last read returned several requests,
	// or came less than two intervals after the one before), a reader
	// reads at most once per ReadCoalesce, so each wake-up, recvmmsg and
	// sendmmsg serves more requests. A wake-up costs more CPU than a
	// request on a two-core machine (perfdhcp at 4,500 leases/s: 2
	// requests per read without it, 7-11 with it, 10-15 % less server
	// CPU), for at most ReadCoalesce more latency. A lone request is
	// answered at once. Default 1 ms, negative = off.
	ReadCoalesce time.Duration

	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// DefaultReplyDelay is the reply delay per class when Config.ReplyDelay is nil.
func DefaultReplyDelay() map[Class]time.Duration {
	return map[Class]time.Duration{ClassPi3B: 2 * time.Second, ClassPi3BPlus: 2 * time.Second}
}

// DefaultPXEBootFiles are iPXE's own binaries for the common PXE ROMs.
func DefaultPXEBootFiles() map[uint16]string {
	return map[uint16]string{
		0:  "undionly.kpxe",  // x86 BIOS
		6:  "ipxe-i386.efi",  // x86 UEFI
		7:  "ipxe.efi",       // x64 UEFI
		9:  "ipxe.efi",       // x64 UEFI (EBC id used by some ROMs)
		11: "ipxe-arm64.efi", // arm64 UEFI
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("dhcpd configuration")

// withDefaults returns a copy of c with defaults filled in, or an error.
func (c Config) withDefaults() (Config, error) {
	switch c.Mode {
	case "":
		c.Mode = ModeFull
	case ModeFull, ModeProxy:
	default:
		return c, fmt.Errorf("%w: mode %q is neither full nor proxy", ErrConfig, c.Mode)
	}
	switch c.Discovery {
	case "":
		c.Discovery = DiscoveryRecord
	case DiscoveryRecord, DiscoveryBoot, DiscoveryIgnore:
	default:
		return c, fmt.Errorf("%w: discovery policy %q is not record, boot or ignore", ErrConfig, c.Discovery)
	}
	if c.ServerIP.IsValid() && !c.ServerIP.Is4() {
		return c, fmt.Errorf("%w: server address %s is not IPv4", ErrConfig, c.ServerIP)
	}
	if c.Mode == ModeFull && len(c.Subnets) == 0 {
		return c, fmt.Errorf("%w: full mode needs at least one subnet", ErrConfig)
	}
	subnets := make([]Subnet, len(c.Subnets))
	for i, s := range c.Subnets {
		if err := s.validate(); err != nil {
			return c, fmt.Errorf("%w: subnet %s: %v", ErrConfig, s.Network, err)
		}
		s.Network = s.Network.Masked()
		subnets[i] = s
	}
	for i := range subnets {
		for j := range i {
			if subnets[i].Network.Overlaps(subnets[j].Network) {
				return c, fmt.Errorf("%w: subnets %s and %s overlap", ErrConfig, subnets[j].Network, subnets[i].Network)
			}
		}
	}
	c.Subnets = subnets
	c.Interfaces = append([]string(nil), c.Interfaces...)
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LeaseTime, time.Hour)
	def(&c.OfferHold, 30*time.Second)
	def(&c.DeclineHold, time.Hour)
	def(&c.DiscoveredExpiry, DefaultDiscoveredExpiry)
	if c.MaxDiscovered <= 0 {
		c.MaxDiscovered = DefaultMaxDiscovered
	}
	def(&c.ProbeTimeout, 3*time.Second)
	switch {
	case c.LeaseReuse == 0:
		c.LeaseReuse = 0.25
	case c.LeaseReuse < 0:
		c.LeaseReuse = 0
	case c.LeaseReuse >= 1:
		return c, fmt.Errorf("%w: lease reuse %v is not below 1", ErrConfig, c.LeaseReuse)
	}
	if c.LeaseTime < 10*time.Second {
		return c, fmt.Errorf("%w: lease time %s is shorter than 10s", ErrConfig, c.LeaseTime)
	}
	if c.ReplyDelay == nil {
		c.ReplyDelay = DefaultReplyDelay()
	}
	if c.PXEBootFiles == nil {
		c.PXEBootFiles = DefaultPXEBootFiles()
	}
	if c.IPXEBootFile == "" {
		c.IPXEBootFile = "boot.ipxe"
	}
	if c.RateLimit == 0 {
		c.RateLimit = 5
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 20
	}
	if c.Port == 0 {
		c.Port = 67
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = 4011
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	switch {
	case c.CommitLinger == 0:
		c.CommitLinger = time.Millisecond
	case c.CommitLinger < 0:
		c.CommitLinger = 0
	}
	switch {
	case c.ReadCoalesce == 0:
		c.ReadCoalesce = time.Millisecond
	case c.ReadCoalesce < 0:
		c.ReadCoalesce = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

func (s Subnet) validate() error {
	if !s.Network.IsValid() || !s.Network.Addr().Is4() {
		return errors.New("network must be an IPv4 prefix")
	}
	if s.Network.Bits() > 30 {
		return errors.New("network is smaller than a /30")
	}
	n := s.Network.Masked()
	for _, a := range []struct {
		what string
		ip   netip.Addr
	}{{"server address", s.ServerIP}, {"router", s.Router}} {
		if a.ip.IsValid() && !a.ip.Is4() {
			return fmt.Errorf("%s %s is not IPv4", a.what, a.ip)
		}
	}
	// ServerIP may lie outside Network: a relayed subnet's server is
	// reached through the relay.
	if !s.Range.IsZero() {
		r := s.Range
		if !r.First.Is4() || !r.Last.Is4() {
			return fmt.Errorf("range %s-%s is not IPv4", r.First, r.Last)
		}
		if !n.Contains(r.First) || !n.Contains(r.Last) {
			return fmt.Errorf("range %s-%s is not inside %s", r.First, r.Last, n)
		}
		if r.Last.Less(r.First) {
			return fmt.Errorf("range %s-%s ends before it starts", r.First, r.Last)
		}
		if r.Size() > 1<<22 {
			return fmt.Errorf("range %s-%s has more than 4M addresses", r.First, r.Last)
		}
	}
	for _, d := range s.DNS {
		if !d.Is4() {
			return fmt.Errorf("DNS server %s is not IPv4", d)
		}
	}
	return nil
}

func addrToU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32ToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
