package dhcpd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/internal/testnet"
)

// childEnv makes the test binary run a DHCP server instead of the tests:
// "DBPATH|NETWORK|FIRST|LAST". The crash test starts it inside a network
// namespace and kills it with SIGKILL.
const childEnv = "PICTL_DHCPD_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

func runChild(spec string) int {
	p := strings.Split(spec, "|")
	if len(p) != 4 {
		fmt.Fprintln(os.Stderr, "bad child spec", spec)
		return 2
	}
	db, err := bbolt.Open(p[0], 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	cfg := Config{Mode: ModeFull, SkipProbe: true, RateLimit: -1, Subnets: []Subnet{{
		Network: netip.MustParsePrefix(p[1]),
		Range:   Range{netip.MustParseAddr(p[2]), netip.MustParseAddr(p[3])},
	}}}
	s, err := New(cfg, newFakeNodes(), db, nil, nil)
	if err == nil {
		err = s.Listen()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild runs the server as a child process in ns and waits until it
// listens.
func startChild(t *testing.T, ns *testnet.NS, spec string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` execs the command: the PID is the server's.
	cmd := ns.Command(context.Background(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	stderr := &testnet.SafeBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("server child exited: %s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server child not ready: %s", stderr.String())
	}
	return cmd
}

// loadClient runs many DORA exchanges at once from one UDP socket on port
// 68 (its interface needs an address to broadcast from); replies are
// broadcast, so it sees them all and matches them by xid.
type loadClient struct {
	conn *net.UDPConn

	mu      sync.Mutex
	pending map[dhcpv4.TransactionID]*loadExchange
	acks    map[string]netip.Addr
	naks    int
}

type loadExchange struct {
	mac     net.HardwareAddr
	started time.Time
	done    chan struct{}
}

func newLoadClient(t *testing.T, ns *testnet.NS) *loadClient {
	t.Helper()
	c := &loadClient{pending: map[dhcpv4.TransactionID]*loadExchange{}, acks: map[string]netip.Addr{}}
	if err := ns.Do(func() error {
		var err error
		c.conn, err = server4.NewIPv4UDPConn("eth0", &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	go c.readLoop()
	return c
}

var bcastServer = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}

func (c *loadClient) readLoop() {
	buf := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		rep, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || rep.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		c.mu.Lock()
		ex := c.pending[rep.TransactionID]
		c.mu.Unlock()
		if ex == nil {
			continue
		}
		switch rep.MessageType() {
		case dhcpv4.MessageTypeOffer:
			req, err := dhcpv4.NewRequestFromOffer(rep, dhcpv4.WithBroadcast(true))
			if err == nil {
				c.conn.WriteTo(req.ToBytes(), bcastServer)
			}
		case dhcpv4.MessageTypeAck:
			c.mu.Lock()
			c.acks[ex.mac.String()] = addrOf(rep.YourIPAddr)
			delete(c.pending, rep.TransactionID)
			c.mu.Unlock()
			close(ex.done)
		case dhcpv4.MessageTypeNak:
			c.mu.Lock()
			c.naks++
			delete(c.pending, rep.TransactionID)
			c.mu.Unlock()
			close(ex.done)
		}
	}
}

// run does a DORA for every MAC, window at a time, giving each timeout,
// until ctx ends; afterAck is called with the number of ACKs so far.
func (c *loadClient) run(ctx context.Context, macs []net.HardwareAddr, window int, timeout time.Duration, afterAck func(int)) {
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	for _, mac := range macs {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
		if err != nil {
			panic(err)
		}
		ex := &loadExchange{mac: mac, started: time.Now(), done: make(chan struct{})}
		c.mu.Lock()
		c.pending[d.TransactionID] = ex
		c.mu.Unlock()
		c.conn.WriteTo(d.ToBytes(), bcastServer)
		wg.Go(func() {
			defer func() { <-sem }()
			select {
			case <-ex.done:
				if afterAck != nil {
					c.mu.Lock()
					n := len(c.acks)
					c.mu.Unlock()
					afterAck(n)
				}
			case <-time.After(timeout):
				c.mu.Lock()
				delete(c.pending, d.TransactionID)
				c.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func (c *loadClient) granted() map[string]netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]netip.Addr, len(c.acks))
	for k, v := range c.acks {
		out[k] = v
	}
	return out
}

func macs(prefix byte, n int) []net.HardwareAddr {
	out := make([]net.HardwareAddr, n)
	for i := range out {
		out[i] = net.HardwareAddr{0x02, prefix, 0, 0, byte(i >> 8), byte(i)}
	}
	return out
}

// No lease that was ACKed is forgotten when the server is SIGKILLed under
// load, and none is handed out twice after it restarts.
func TestNetnsLeasesSurviveKill9(t *testing.T) {
	l := newLab(t, "10.88.0.1/16")
	cli := l.client("br0", "", "10.88.0.2/16")
	dbPath := filepath.Join(t.TempDir(), "runtime.db")
	spec := dbPath + "|10.88.0.0/16|10.88.1.0|10.88.255.254"

	server := startChild(t, l.srv, spec)
	lc := newLoadClient(t, cli)
	killed, kill := context.WithCancel(context.Background())
	defer kill()
	var once sync.Once
	lc.run(killed, macs(1, 600), 48, time.Second, func(n int) {
		if n >= 250 {
			once.Do(func() {
				server.Process.Signal(syscall.SIGKILL)
				kill()
			})
		}
	})
	server.Wait()
	first := lc.granted()
	lc.conn.Close()
	if len(first) < 250 {
		t.Fatalf("only %d leases before the kill", len(first))
	}

	// Every ACKed lease is on disk (in bbolt, or still in the lease
	// journal, which Store.Leases reads too).
	var journalBytes int64
	if fi, err := os.Stat(dbPath + ".dhcpd-journal"); err == nil {
		journalBytes = fi.Size()
	}
	db, err := bbolt.Open(dbPath, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.Leases()
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	byMAC := map[string]Lease{}
	for _, sl := range stored {
		byMAC[sl.MAC.String()] = sl
	}
	now := time.Now()
	for mac, ip := range first {
		sl, ok := byMAC[mac]
		if !ok || sl.IP != ip || !sl.Active(now) {
			t.Errorf("ACKed lease %s → %s not on disk after kill -9 (stored: %+v)", mac, ip, sl)
		}
	}
	t.Logf("%d leases ACKed before SIGKILL, %d records on disk (lease journal: %d bytes not yet in bbolt)", len(first), len(stored), journalBytes)

	// Restart: new clients never get an address already granted.
	startChild(t, l.srv, spec)
	lc2 := newLoadClient(t, cli)
	lc2.run(context.Background(), macs(2, 400), 48, 3*time.Second, nil)
	second := lc2.granted()
	lc2.conn.Close()
	if len(second) != 400 {
		t.Errorf("%d of 400 new clients got a lease after the restart", len(second))
	}
	taken := map[netip.Addr]string{}
	for mac, ip := range first {
		taken[ip] = mac
	}
	for mac, ip := range second {
		if owner, dup := taken[ip]; dup {
			t.Errorf("%s handed to %s, already granted to %s", ip, mac, owner)
		}
	}
	// Old clients coming back get their address again.
	back := macs(1, 40)
	lc3 := newLoadClient(t, cli)
	lc3.run(context.Background(), back, 8, 3*time.Second, nil)
	for mac, ip := range lc3.granted() {
		if want, ok := first[mac]; ok && want != ip {
			t.Errorf("%s came back and got %s, had %s", mac, ip, want)
		}
	}
}
