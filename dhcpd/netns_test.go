package dhcpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/net/ipv6"

	"github.com/pictl/pictl/internal/testnet"
)

// lab is a server namespace with a bridge that client namespaces plug into.
type lab struct {
	t     *testing.T
	srv   *testnet.NS
	nveth int
}

func newLab(t *testing.T, bridgeCIDR string) *lab {
	t.Helper()
	testnet.Require(t)
	l := &lab{t: t, srv: testnet.New(t, "dhcpd")}
	l.srv.Bridge("br0", bridgeCIDR)
	return l
}

// client makes a namespace whose eth0 (MAC mac, address cidr or none) is
// plugged into bridge.
func (l *lab) client(bridge, mac, cidr string) *testnet.NS {
	l.t.Helper()
	ns := testnet.New(l.t, "cli")
	l.nveth++
	l.srv.Veth(fmt.Sprintf("vc%d", l.nveth), bridge, ns, "eth0", cidr)
	if mac != "" {
		ns.MustIP("link", "set", "eth0", "down")
		ns.MustIP("link", "set", "eth0", "address", mac)
		ns.MustIP("link", "set", "eth0", "up")
	}
	return ns
}

// serve starts an in-process server with its sockets in the lab's server
// namespace; it stops when the test ends.
func (l *lab) serve(cfg Config, nodes Nodes, db *bbolt.DB) (*Server, *prometheus.Registry) {
	l.t.Helper()
	if db == nil {
		db = openTestDB(l.t, "")
	}
	reg := prometheus.NewRegistry()
	logs := &testnet.SafeBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, nodes, db, log, reg)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.srv.Do(s.Listen); err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	l.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			l.t.Errorf("Serve: %v", err)
		}
		if l.t.Failed() {
			l.t.Logf("server log:\n%s", logs.String())
		}
	})
	return s, reg
}

func fullConfig(network, first, last string) Config {
	return Config{
		Mode: ModeFull,
		Subnets: []Subnet{{
			Network: netip.MustParsePrefix(network),
			Range:   Range{netip.MustParseAddr(first), netip.MustParseAddr(last)},
			Router:  netip.MustParseAddr("10.99.0.1"),
			DNS:     []netip.Addr{netip.MustParseAddr("10.99.0.1")},
			Domain:  "cluster.test",
		}},
		SkipProbe: true,
	}
}

func nclient(t *testing.T, ns *testnet.NS, opts ...nclient4.ClientOpt) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := ns.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", append([]nclient4.ClientOpt{nclient4.WithTimeout(time.Second), nclient4.WithRetry(5)}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func requestsTotal(reg *prometheus.Registry, outcome string) float64 {
	mfs, _ := reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "pictl_dhcpd_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" && lp.GetValue() == outcome {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func metricValue(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func TestNetnsNclient4(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	nodes := newFakeNodes().add("02:00:00:00:00:42", Node{Name: "n42", IP: netip.MustParseAddr("10.99.0.42"), Netboot: true})
	_, reg := l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), nodes, nil)

	cli := l.client("br0", "02:00:00:00:00:42", "")
	c := nclient(t, cli)
	lease, err := c.Request(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ack := lease.ACK
	if !ack.YourIPAddr.Equal(net.IPv4(10, 99, 0, 42)) || !ack.ServerIdentifier().Equal(net.IPv4(10, 99, 0, 1)) {
		t.Errorf("ACK: yiaddr %s server %s", ack.YourIPAddr, ack.ServerIdentifier())
	}
	if ack.HostName() != "n42" || ack.RootPath() != "10.99.0.1:/nodes/n42" || ack.DomainName() != "cluster.test" {
		t.Errorf("ACK: hostname %q root path %q domain %q", ack.HostName(), ack.RootPath(), ack.DomainName())
	}
	// INFORM from a configured client: ACK without a lease, unicast to it.
	cli.MustIP("addr", "add", "10.99.0.42/24", "dev", "eth0")
	inf, err := c.Inform(context.Background(), net.IPv4(10, 99, 0, 42))
	if err != nil {
		t.Fatal(err)
	}
	if inf.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !inf.YourIPAddr.IsUnspecified() {
		t.Errorf("INFORM answer carries a lease: %v", inf)
	}
	if n := requestsTotal(reg, outAck); n != 2 {
		t.Errorf("%v ACKs counted, want 2", n)
	}
}

// udhcpcScript records the environment udhcpc gives its script on "bound".
const udhcpcScript = `#!/bin/sh
[ "$1" = bound ] || exit 0
env > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
`

func runUdhcpc(t *testing.T, ns *testnet.NS, args ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "env")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, "udhcpc", append([]string{"-i", "eth0", "-f", "-q", "-n", "-t", "8", "-T", "1", "-s", script}, args...)...)
	cmd.Env = append(os.Environ(), "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, b)
	}
	return readEnv(t, out)
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestNetnsUdhcpc(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	nodes := newFakeNodes().add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", IP: netip.MustParseAddr("10.99.0.14"), Netboot: true})
	srv, _ := l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), nodes, nil)

	t.Run("plain", func(t *testing.T) {
		env := runUdhcpc(t, l.client("br0", "02:00:00:00:00:01", ""))
		want := map[string]string{"ip": "10.99.0.100", "subnet": "255.255.255.0", "router": "10.99.0.1",
			"dns": "10.99.0.1", "domain": "cluster.test", "serverid": "10.99.0.1", "lease": "3600"}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s = %q, want %q", k, env[k], v)
			}
		}
	})
	t.Run("faking a Pi 4", func(t *testing.T) {
		cli := l.client("br0", "dc:a6:32:2e:f8:ed", "")
		env := runUdhcpc(t, cli, "-V", "PXEClient:Arch:00000:UNDI:002001",
			"-x", "0x61:00525069341131a000322ef8ed1045155b", "-x", "0x5d:0000",
			"-O", "43", "-O", "60", "-O", "97", "-O", "66")
		if env["ip"] != "10.99.0.14" || env["siaddr"] != "10.99.0.1" || env["serverid"] != "10.99.0.1" || env["hostname"] != "pi4" {
			t.Errorf("Pi 4 lease: ip %q siaddr %q serverid %q hostname %q", env["ip"], env["siaddr"], env["serverid"], env["hostname"])
		}
		if env["tftp"] != "10.99.0.1" {
			t.Errorf("option 66 = %q", env["tftp"])
		}
		if got := env["opt43"]; !strings.EqualFold(got, fmt.Sprintf("%x", PiVendorOptions(true))) {
			t.Errorf("option 43 as udhcpc saw it: %q", got)
		}
		if got := env["opt97"]; got != "00525069341131a000322ef8ed1045155b" {
			t.Errorf("option 97 as udhcpc saw it: %q", got)
		}
		leases, _ := srv.Store().Leases()
		if len(leases) != 2 {
			t.Errorf("%d leases stored, want 2: %+v", len(leases), leases)
		}
	})
}

// dhclientScript records the environment on BOUND; dhclient clears the
// environment, so the output path is written into the script.
const dhclientScript = `#!/bin/sh
case "$reason" in BOUND|REBOOT|RENEW) env > "%[1]s.tmp" && mv "%[1]s.tmp" "%[1]s" ;; esac
exit 0
`

func TestNetnsDhclient(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), newFakeNodes(), nil)
	cli := l.client("br0", "02:00:00:00:00:07", "")
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	out := filepath.Join(dir, "env")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(dhclientScript, out)), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := cli.Command(context.Background(), "dhclient", "-d", "-1", "-v", "-sf", script,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "eth0")
	logs := &testnet.SafeBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(out); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dhclient got no lease:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := readEnv(t, out)
	for k, v := range map[string]string{"new_ip_address": "10.99.0.100", "new_subnet_mask": "255.255.255.0",
		"new_routers": "10.99.0.1", "new_dhcp_server_identifier": "10.99.0.1", "new_dhcp_lease_time": "3600",
		"new_domain_name": "cluster.test"} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
	if !bytes.Contains(leases, []byte("fixed-address 10.99.0.100")) {
		t.Errorf("dhclient's lease file:\n%s", leases)
	}
}

// udhcpd runs busybox udhcpd (the "home router") in ns on eth0.
func udhcpd(t *testing.T, ns *testnet.NS, first, last, router string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	leases := filepath.Join(dir, "udhcpd.leases")
	os.WriteFile(leases, nil, 0o644)
	cfg := fmt.Sprintf("start %s\nend %s\ninterface eth0\nlease_file %s\npidfile %s\noption subnet 255.255.255.0\noption router %s\noption lease 600\n",
		first, last, leases, filepath.Join(dir, "pid"), router)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// -a: busybox pings an address for 2 s before offering it by default.
	ns.Start("busybox", "udhcpd", "-f", "-a", "50", conf)
}

// collectReplies sends pkt from ns's eth0 (raw socket, source 0.0.0.0) and
// returns every reply with its xid seen within wait.
func collectReplies(t *testing.T, ns *testnet.NS, pkt *dhcpv4.DHCPv4, wait time.Duration) []*dhcpv4.DHCPv4 {
	t.Helper()
	var conn net.PacketConn
	if err := ns.Do(func() error {
		var err error
		conn, err = nclient4.NewRawUDPConn("eth0", dhcpv4.ClientPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got []*dhcpv4.DHCPv4
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 3 && len(got) == 0; attempt++ {
		if _, err := conn.WriteTo(pkt.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			r, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && r.OpCode == dhcpv4.OpcodeBootReply && r.TransactionID == pkt.TransactionID {
				got = append(got, r)
			}
		}
	}
	return got
}

func TestNetnsProxyMode(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	router := l.client("br0", "02:00:00:00:00:fe", "10.99.0.254/24")
	udhcpd(t, router, "10.99.0.150", "10.99.0.160", "10.99.0.254")
	nodes := newFakeNodes().
		add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", Netboot: true}).
		add("02:00:00:00:00:03", Node{Name: "os", Netboot: true})
	_, reg := l.serve(Config{Mode: ModeProxy}, nodes, nil)

	t.Run("plain client gets its address from the router only", func(t *testing.T) {
		env := runUdhcpc(t, l.client("br0", "02:00:00:00:00:03", ""))
		if env["serverid"] != "10.99.0.254" || !strings.HasPrefix(env["ip"], "10.99.0.15") {
			t.Errorf("lease from %q: %q", env["serverid"], env["ip"])
		}
		if n := requestsTotal(reg, outOffer) + requestsTotal(reg, outAck); n != 0 {
			t.Errorf("proxy answered a plain client %v times", n)
		}
	})
	t.Run("Pi 4 gets an address offer and a PXE offer", func(t *testing.T) {
		cli := l.client("br0", "dc:a6:32:2e:f8:ed", "")
		d := packetFromFixture(t, "pi4-discover.hex")
		d.SetBroadcast()
		replies := collectReplies(t, cli, d, 1500*time.Millisecond)
		var fromRouter, fromUs *dhcpv4.DHCPv4
		for _, r := range replies {
			switch {
			case r.ServerIdentifier().Equal(net.IPv4(10, 99, 0, 254)):
				fromRouter = r
			case r.ServerIdentifier().Equal(net.IPv4(10, 99, 0, 1)):
				fromUs = r
			}
		}
		if fromRouter == nil || fromUs == nil {
			t.Fatalf("replies %v", replies)
		}
		if fromRouter.YourIPAddr.IsUnspecified() {
			t.Error("router offered no address")
		}
		if !fromUs.YourIPAddr.IsUnspecified() || string(opt(fromUs, 60)) != "PXEClient" ||
			!bytes.Equal(opt(fromUs, 43), PiVendorOptions(true)) || !fromUs.ServerIPAddr.Equal(net.IPv4(10, 99, 0, 1)) {
			t.Errorf("proxy offer: yiaddr %s, options %v", fromUs.YourIPAddr, fromUs.Options)
		}
	})
	t.Run("unknown Pi is recorded, not answered", func(t *testing.T) {
		cli := l.client("br0", "d8:3a:dd:00:11:22", "")
		replies := collectReplies(t, cli, packetFromFixture(t, "pi-unknown-discover.hex"), time.Second)
		for _, r := range replies {
			if r.ServerIdentifier().Equal(net.IPv4(10, 99, 0, 1)) {
				t.Errorf("proxy answered an unknown Pi: %v", r)
			}
		}
	})
}

// A relay agent (giaddr) gets the answers on its port 67, for a subnet
// that is not on the server's interface.
func TestNetnsRelay(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	relay := l.client("br0", "", "10.99.0.2/24")
	// The relay's client-side address (a second address is enough here).
	relay.MustIP("addr", "add", "10.30.0.1/24", "dev", "eth0")
	l.srv.MustIP("route", "add", "10.30.0.0/24", "via", "10.99.0.2")
	cfg := fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199")
	cfg.Subnets = append(cfg.Subnets, Subnet{Network: netip.MustParsePrefix("10.30.0.0/24"),
		Range: Range{netip.MustParseAddr("10.30.0.50"), netip.MustParseAddr("10.30.0.60")}, Router: netip.MustParseAddr("10.30.0.1")})
	srv, _ := l.serve(cfg, newFakeNodes(), nil)

	var conn *net.UDPConn
	if err := relay.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 30, 0, 1), Port: 67})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 67}
	roundTrip := func(p *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		t.Helper()
		buf := make([]byte, 2048)
		for range 3 {
			if _, err := conn.WriteTo(p.ToBytes(), server); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, from, err := conn.ReadFrom(buf)
				if err != nil {
					break
				}
				r, err := dhcpv4.FromBytes(buf[:n])
				if err == nil && r.TransactionID == p.TransactionID {
					if from.(*net.UDPAddr).Port != 67 {
						t.Errorf("reply from port %d", from.(*net.UDPAddr).Port)
					}
					return r
				}
			}
		}
		t.Fatal("no reply at the relay")
		return nil
	}
	d := discover("02:00:00:00:00:31", dhcpv4.WithGatewayIP(net.IPv4(10, 30, 0, 1)))
	d.HopCount = 1
	offer := roundTrip(d)
	if !offer.YourIPAddr.Equal(net.IPv4(10, 30, 0, 50)) || !offer.GatewayIPAddr.Equal(net.IPv4(10, 30, 0, 1)) {
		t.Fatalf("relayed offer: yiaddr %s giaddr %s", offer.YourIPAddr, offer.GatewayIPAddr)
	}
	if !bytes.Equal(opt(offer, 3), []byte{10, 30, 0, 1}) || !bytes.Equal(opt(offer, 1), []byte{255, 255, 255, 0}) {
		t.Errorf("relayed offer router %v mask %v", opt(offer, 3), opt(offer, 1))
	}
	req := requestFor(offer)
	req.GatewayIPAddr = net.IPv4(10, 30, 0, 1)
	ack := roundTrip(req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(net.IPv4(10, 30, 0, 50)) {
		t.Fatalf("relayed ACK %v", ack)
	}
	if l, ok, _ := srv.Store().LeaseByMAC(mustMAC("02:00:00:00:00:31")); !ok || l.IP != netip.MustParseAddr("10.30.0.50") {
		t.Errorf("stored %+v", l)
	}
}

// Two bridges, two subnets, one socket: each client is answered out of its
// own interface with its own subnet's address and server identifier.
func TestNetnsMultiHomed(t *testing.T) {
	l := newLab(t, "10.10.0.1/24")
	l.srv.Bridge("br1", "10.20.0.1/24")
	cfg := Config{
		Mode:       ModeFull,
		Interfaces: []string{"br0", "br1"},
		Subnets: []Subnet{
			{Network: netip.MustParsePrefix("10.10.0.0/24"), Range: Range{netip.MustParseAddr("10.10.0.100"), netip.MustParseAddr("10.10.0.110")}},
			{Network: netip.MustParsePrefix("10.20.0.0/24"), Range: Range{netip.MustParseAddr("10.20.0.100"), netip.MustParseAddr("10.20.0.110")}},
		},
		SkipProbe: true,
	}
	l.serve(cfg, newFakeNodes(), nil)
	for _, tt := range []struct{ bridge, mac, ip, server string }{
		{"br0", "02:00:00:00:10:01", "10.10.0.100", "10.10.0.1"},
		{"br1", "02:00:00:00:20:01", "10.20.0.100", "10.20.0.1"},
		{"br0", "02:00:00:00:10:02", "10.10.0.101", "10.10.0.1"},
	} {
		cli := l.client(tt.bridge, tt.mac, "")
		lease, err := nclient(t, cli).Request(context.Background())
		if err != nil {
			t.Fatalf("%s on %s: %v", tt.mac, tt.bridge, err)
		}
		if lease.ACK.YourIPAddr.String() != tt.ip || lease.ACK.ServerIdentifier().String() != tt.server {
			t.Errorf("%s on %s: got %s from %s, want %s from %s", tt.mac, tt.bridge,
				lease.ACK.YourIPAddr, lease.ACK.ServerIdentifier(), tt.ip, tt.server)
		}
	}
}

// At start-up in full mode the server looks for other DHCP servers.
func TestNetnsProbeFindsOtherServer(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	router := l.client("br0", "02:00:00:00:00:fe", "10.99.0.254/24")
	udhcpd(t, router, "10.99.0.150", "10.99.0.160", "10.99.0.254")
	time.Sleep(300 * time.Millisecond) // udhcpd opens its socket
	cfg := fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.120")
	cfg.SkipProbe = false
	cfg.ProbeTimeout = 1500 * time.Millisecond
	srv, reg := l.serve(cfg, newFakeNodes(), nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.OtherServers()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	others := srv.OtherServers()
	if len(others) != 1 || others[0].ServerID != netip.MustParseAddr("10.99.0.254") || others[0].Interface != "br0" {
		t.Fatalf("other servers %+v", others)
	}
	if got := metricValue(reg, "pictl_dhcpd_other_servers"); got != 1 {
		t.Errorf("gauge %v", got)
	}
}

// The probe's own DISCOVER must not be answered by ourselves or reported.
func TestNetnsProbeAlone(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	cfg := fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.120")
	cfg.SkipProbe = false
	cfg.ProbeTimeout = 500 * time.Millisecond
	srv, reg := l.serve(cfg, newFakeNodes(), nil)
	time.Sleep(900 * time.Millisecond)
	if o := srv.OtherServers(); len(o) != 0 {
		t.Errorf("reported %+v", o)
	}
	if n := requestsTotal(reg, outOffer); n != 0 {
		t.Errorf("answered its own probe %v times", n)
	}
}

func TestNetnsRAResponder(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	l.srv.MustExec("sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.disable_ipv6=0")
	cli := l.client("br0", "02:00:00:00:00:66", "")
	cli.MustExec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.eth0.disable_ipv6=0")
	// The veths in the server namespace carry the bridge's traffic.
	l.srv.MustExec("sysctl", "-qw", "net.ipv6.conf.vc1.disable_ipv6=0")
	ra, err := NewRAResponder([]string{"br0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Do(ra.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ra.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	var conn *net.IPConn
	zone := ""
	if err := cli.Do(func() error {
		// Zones are resolved by name in the calling thread's namespace:
		// use the index, found here.
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		zone = fmt.Sprint(ifc.Index)
		conn, err = net.ListenIP("ip6:ipv6-icmp", &net.IPAddr{IP: net.IPv6unspecified})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Neighbour discovery needs hop limit 255 or the responder ignores it.
	if err := setHopLimits(conn); err != nil {
		t.Fatal(err)
	}
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	buf := make([]byte, 1500)
	var got []byte
	for attempt := 0; attempt < 10 && got == nil; attempt++ {
		if _, err := conn.WriteTo(rs, &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: zone}); err != nil {
			// The link-local address may still be coming up.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 16 && buf[0] == 134 {
				got = append([]byte(nil), buf[:n]...)
				break
			}
		}
	}
	if got == nil {
		t.Fatal("no router advertisement")
	}
	if lifetime := uint16(got[6])<<8 | uint16(got[7]); lifetime != 0 || got[5] != 0 {
		t.Errorf("RA router lifetime %d flags %#x, want 0 and 0", lifetime, got[5])
	}
	if len(got) > 16 && got[16] == 3 {
		t.Error("RA carries a prefix option")
	}
	// The responder counts an answer after sending it: the RA can arrive
	// first.
	for deadline := time.Now().Add(2 * time.Second); ra.Answers() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if ra.Answers() == 0 {
		t.Error("Answers() = 0")
	}
}

func setHopLimits(c *net.IPConn) error {
	p := ipv6.NewPacketConn(c)
	if err := p.SetMulticastHopLimit(255); err != nil {
		return err
	}
	return p.SetHopLimit(255)
}

// TestNetnsUnroutableCiaddrKeepsServing: a DISCOVER whose ciaddr the
// server cannot route to used to panic in sendBatch (sendmmsg's -1 taken as
// a count). The reply is dropped and counted; the next client is served.
func TestNetnsUnroutableCiaddrKeepsServing(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	// The refusal happens in the server's own routing table: nothing leaves it.
	l.srv.MustIP("route", "add", "prohibit", "192.0.2.0/24")
	nodes := newFakeNodes().add("02:00:00:00:00:42", Node{Name: "n42", IP: netip.MustParseAddr("10.99.0.42"), Netboot: true})
	_, reg := l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), nodes, nil)

	attacker := l.client("br0", "02:00:00:00:00:66", "10.99.0.66/24")
	err := attacker.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setBroadcast(int(fd)) }); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		for _, ciaddr := range []net.IP{net.IPv4(192, 0, 2, 7), net.IPv4(198, 51, 100, 7)} {
			d, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 0x66}, dhcpv4.WithClientIP(ciaddr))
			if err != nil {
				return err
			}
			if _, err := c.WriteTo(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(reg, "pictl_dhcpd_send_errors_total") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := metricValue(reg, "pictl_dhcpd_send_errors_total"); n < 2 {
		t.Errorf("send errors counted: %v, want 2 (one per unroutable ciaddr)", n)
	}
	lease, err := nclient(t, l.client("br0", "02:00:00:00:00:42", "")).Request(context.Background())
	if err != nil {
		t.Fatalf("server stopped answering after unroutable replies: %v", err)
	}
	if !lease.ACK.YourIPAddr.Equal(net.IPv4(10, 99, 0, 42)) {
		t.Errorf("yiaddr %s", lease.ACK.YourIPAddr)
	}
}
