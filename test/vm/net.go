package vm

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/pictl/pictl/internal/testnet"
)

// Net is a private test network: a namespace with a bridge carrying the
// controller's address, and one tap per guest. Servers under test listen
// inside NS (NS.Do for in-process servers, NS.Start for commands).
type Net struct {
	NS     *testnet.NS
	Bridge string       // "br0"
	Addr   netip.Prefix // the host (controller) address on the bridge, e.g. 10.99.0.1/24

	t    testing.TB
	mu   sync.Mutex
	taps int
}

// DefaultHostAddr is the bridge address NewNet gives the controller side.
var DefaultHostAddr = netip.MustParsePrefix("10.99.0.1/24")

// NewNet creates the namespace (named pt-<tag>-<random>) with bridge br0 at
// 10.99.0.1/24 and IPv6 off. Everything is removed when the test ends. It
// skips the test unless QEMU can run here (root, qemu-system-x86_64).
func NewNet(t testing.TB, tag string) *Net {
	return NewNetAddr(t, tag, DefaultHostAddr)
}

// NewNetAddr is NewNet with another host address.
func NewNetAddr(t testing.TB, tag string, addr netip.Prefix) *Net {
	t.Helper()
	RequireQEMU(t)
	ns := testnet.New(t, tag)
	ns.Bridge("br0", addr.String())
	return &Net{NS: ns, Bridge: "br0", Addr: addr, t: t}
}

// RequireQEMU skips the test unless it runs as root with QEMU and the tools
// the network needs.
func RequireQEMU(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("vm: QEMU guest tests need root (network namespace, tap devices); CI runs them as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("vm: needs %s (Debian qemu-system-x86, iproute2)", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("vm: needs /dev/net/tun for QEMU's tap networking")
	}
}

// Host is the controller's address on the bridge (10.99.0.1).
func (n *Net) Host() netip.Addr { return n.Addr.Addr() }

// GuestAddr returns a static guest address on the bridge's subnet:
// host+9+i with the bridge's prefix length (10.99.0.10/24 for i=0), outside
// the range tests give to DHCP (.100-.199).
func (n *Net) GuestAddr(i int) netip.Prefix {
	a := n.Host()
	for range 9 + i {
		a = a.Next()
	}
	return netip.PrefixFrom(a, n.Addr.Bits())
}

// NewTap creates the next tap device (tap0, tap1, ...) on the bridge.
func (n *Net) NewTap() string {
	n.t.Helper()
	n.mu.Lock()
	name := fmt.Sprintf("tap%d", n.taps)
	n.taps++
	n.mu.Unlock()
	n.NS.Tap(name, n.Bridge)
	return name
}

// Start boots a guest on a new tap of this network (see Machine and Start).
// The guest is killed when the test ends if it still runs; the test fails
// at once if QEMU cannot be started.
func (n *Net) Start(t testing.TB, m Machine) *Guest {
	t.Helper()
	m.Netns = n.NS.Name
	if m.Tap == "" {
		m.Tap = n.NewTap()
	}
	if m.ConsoleLog == "" {
		if dir := os.Getenv(LogDirEnv); dir != "" {
			m.ConsoleLog = fmt.Sprintf("%s/%s-%s.console.log", dir, sanitizeTestName(t.Name()), m.name())
		}
	}
	if m.Logf == nil && os.Getenv(VerboseEnv) != "" {
		m.Logf = t.Logf
	}
	g, err := Start(t.Context(), m)
	if err != nil {
		t.Fatalf("vm: start guest %s: %v", m.name(), err)
	}
	t.Cleanup(g.Kill)
	return g
}

// Boot is Start followed by Wait.
func (n *Net) Boot(t testing.TB, m Machine) *Result {
	t.Helper()
	return n.Start(t, m).Wait()
}

// RequirePassed fails the test unless r passed, printing the summary and the
// console tail.
func RequirePassed(t testing.TB, r *Result) {
	t.Helper()
	if !r.Passed() {
		t.Fatalf("vm: %s\n--- console tail (%s):\n%s--- qemu stderr:\n%s", r.Summary(), r.Name, r.Tail(60), r.Stderr)
	}
}

func sanitizeTestName(s string) string { return safeName(s) }
