package hardening

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/pictl/pictl/internal/testnet"
	"github.com/pictl/pictl/test/e2e"
	"github.com/pictl/pictl/test/internal/nfs3client"
)

// TestServeUnderHostileLoad runs `pictl serve` in a network namespace and
// attacks every port at once from a host with three addresses — idle NFS
// connections, unfinished 15 MiB RPC records, idle and 401'd keep-alive
// API connections, DISCOVERs with forged MACs, DECLINEs of the node's
// reservation — while node n1 "boots" again and again: its DHCP lease
// (udhcpc), a boot file over TFTP (curl), its root over NFS (the project's
// NFS client), and `pictl node ls` through the unix socket. Every boot
// must succeed and serve must stay within its descriptor and memory
// limits. PICTL_SOAK_DURATION (e.g. 3m) keeps the load on that long (make
// bench); the default is one round.
func TestServeUnderHostileLoad(t *testing.T) {
	testnet.Require(t)
	raiseNOFILE(t)
	soak := time.Duration(0)
	if v := os.Getenv("PICTL_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PICTL_SOAK_DURATION: %v", err)
		}
		soak = d
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := e2e.BuildPictl(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	srvNS := testnet.New(t, "hsrv")
	srvNS.Bridge("br0", "10.99.0.1/24")
	node := testnet.New(t, "hnode")
	srvNS.Veth("vn0", "br0", node, "eth0", "10.99.0.10/24")
	node.MustIP("link", "set", "eth0", "address", "02:00:00:00:00:aa")
	attacker := testnet.New(t, "hatk")
	srvNS.Veth("va0", "br0", attacker, "eth0", "10.99.0.201/24")
	attacker.MustIP("addr", "add", "10.99.0.202/24", "dev", "eth0")
	attacker.MustIP("addr", "add", "10.99.0.203/24", "dev", "eth0")

	c, err := e2e.NewController(bin, filepath.Join(dir, "ctl"), srvNS.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx, "br0", "10.99.0.1/24", "full"); err != nil {
		t.Fatal(err)
	}
	boot, root := filepath.Join(dir, "img", "boot"), filepath.Join(dir, "img", "root")
	for _, d := range []string{boot, filepath.Join(root, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(boot, "config.txt"), []byte("arm_64bit=1\n"), 0o644)
	os.WriteFile(filepath.Join(boot, "start4.elf"), make([]byte, 300<<10), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("n1\n"), 0o644)
	yml, _ := os.ReadFile(c.Config)
	yml = []byte(strings.Replace(string(yml), "images: {}", fmt.Sprintf("images:\n  img:\n    arch: arm64\n    boot: %s\n    root: %s\n", boot, root), 1))
	yml = append(yml, "ports:\n  api: 8080\n"...)
	if err := os.WriteFile(c.Config, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, "node", "add", "n1", "--mac", "02:00:00:00:00:aa", "--ip", "10.99.0.10", "--image", "img"); err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	pid := c.PID()

	// Peak descriptors and memory of pictl serve.
	var peakFDs, peakRSS atomic.Int64
	stopSample := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil && int64(len(fds)) > peakFDs.Load() {
				peakFDs.Store(int64(len(fds)))
			}
			if rss := procRSS(pid); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-stopSample:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	var boots, failed atomic.Int64
	bootOnce := func(when string) {
		boots.Add(1)
		if err := bootNode(ctx, node, c); err != nil {
			failed.Add(1)
			t.Errorf("boot %s: %v", when, err)
		}
	}
	bootOnce("before the attack")

	stop := make(chan struct{})
	var attacks sync.WaitGroup
	var sent [5]atomic.Int64
	srcs := []string{"10.99.0.201", "10.99.0.202", "10.99.0.203"}
	dial := func(src, addr string) (net.Conn, error) {
		var conn net.Conn
		err := attacker.Do(func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
			var err error
			conn, err = d.Dial("tcp", addr)
			return err
		})
		return conn, err
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// 1. Idle NFS connections (no MOUNT, no RPC), kept open.
	attacks.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := 0; !stopped(); i++ {
			conn, err := dial(srcs[i%3], "10.99.0.1:2049")
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			sent[0].Add(1)
			held = append(held, conn)
			// The test process has 20,000 descriptors for everything:
			// recycle our own side, as a long attack would.
			if len(held) >= 6000 {
				for _, c := range held[:3000] {
					c.Close()
				}
				held = append([]net.Conn(nil), held[3000:]...)
			}
		}
	})
	// 2. Proven NFS connections sending 15 MiB of a record never finished.
	attacks.Go(func() {
		chunk := make([]byte, 256<<10)
		var wg sync.WaitGroup
		for i := 0; !stopped(); i++ {
			if i%100 == 99 {
				wg.Wait()
			}
			wg.Go(func() {
				conn, err := dial(srcs[i%3], "10.99.0.1:2049")
				if err != nil {
					return
				}
				defer conn.Close()
				sent[1].Add(1)
				conn.Write(nullCall(uint32(i)))
				conn.Write(binary.BigEndian.AppendUint32(nil, (15<<20+1<<10)|0x80000000))
				for n := 0; n < 15<<20 && !stopped(); n += len(chunk) {
					conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := conn.Write(chunk); err != nil {
						return
					}
				}
				<-stop
			})
		}
		wg.Wait()
	})
	// 3. API connections: idle, and keep-alive after a 401.
	attacks.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := 0; !stopped(); i++ {
			conn, err := dial(srcs[i%3], "10.99.0.1:8080")
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			sent[2].Add(1)
			if i%2 == 0 {
				fmt.Fprintf(conn, "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			held = append(held, conn)
			if len(held) >= 4000 {
				for _, c := range held[:2000] {
					c.Close()
				}
				held = append([]net.Conn(nil), held[2000:]...)
			}
		}
	})
	// 4. DISCOVERs with forged MACs, and DECLINEs of n1's reservation.
	attacks.Go(func() {
		var pc net.PacketConn
		if err := attacker.Do(func() error {
			var err error
			pc, err = nclient4.NewRawUDPConn("eth0", dhcpv4.ClientPort)
			return err
		}); err != nil {
			t.Error(err)
			return
		}
		defer pc.Close()
		bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
		decline, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 0xaa}),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.99.0.10"))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.99.0.1"))))
		for i := 0; !stopped(); i++ {
			mac := net.HardwareAddr{0x02, 0x66, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			p, _ := dhcpv4.NewDiscovery(mac, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
			pc.WriteTo(p.ToBytes(), bcast)
			sent[3].Add(1)
			if i%100 == 0 {
				pc.WriteTo(decline.ToBytes(), bcast)
				sent[4].Add(1)
			}
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond) // ~10,000/s at most
			}
		}
	})

	start := time.Now()
	for round := 1; ; round++ {
		time.Sleep(2 * time.Second)
		if pid := c.PID(); pid == 0 {
			t.Fatalf("pictl serve is gone:\n%s", c.LogTail(30))
		}
		bootOnce(fmt.Sprintf("%d during the attack", round))
		if time.Since(start) >= soak && round >= 5 {
			break
		}
	}
	close(stop)
	attacks.Wait()
	time.Sleep(time.Second)
	bootOnce("after the attack")
	close(stopSample)
	sampler.Wait()
	// Memory held for the attackers goes back once they are gone (the Go
	// runtime returns freed pages to the system gradually).
	var after int64
	for i := 0; i < 60; i++ {
		if after = procRSS(pid); after < 160<<20 {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("pictl serve RSS after the attack: %d MiB", after>>20)
	if after > 256<<20 {
		t.Errorf("pictl serve still holds %d MiB a minute after the attack ended", after>>20)
	}

	t.Logf("attack: %d idle NFS conns, %d partial-record conns, %d API conns, %d forged DISCOVERs, %d DECLINEs over %s",
		sent[0].Load(), sent[1].Load(), sent[2].Load(), sent[3].Load(), sent[4].Load(), time.Since(start).Round(time.Second))
	t.Logf("boots: %d, failed %d; pictl serve peak: %d descriptors, %d MiB RSS", boots.Load(), failed.Load(), peakFDs.Load(), peakRSS.Load()>>20)
	if failed.Load() != 0 {
		t.Errorf("%d of %d boots failed", failed.Load(), boots.Load())
		var mine []string
		lines := strings.Split(c.Log(), "\n")
		for _, l := range lines {
			if strings.Contains(l, "02:00:00:00:00:aa") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
				mine = append(mine, l)
			}
		}
		if len(mine) > 60 {
			mine = mine[len(mine)-60:]
		}
		t.Logf("serve log: %d lines; about n1, warnings and errors:\n%s", len(lines), strings.Join(mine, "\n"))
	}
	// nfsd holds at most 3×64 connections from the attacker, the API 3×16;
	// files, sockets and the database are well under 200 more.
	if peakFDs.Load() > 3*64+3*16+200 {
		t.Errorf("pictl serve peaked at %d descriptors", peakFDs.Load())
	}
	// The records' budget is 128 MiB (twice that before the GC runs); the
	// rest of serve is tens of MiB.
	if peakRSS.Load() > 512<<20 {
		t.Errorf("pictl serve peaked at %d MiB RSS", peakRSS.Load()>>20)
	}
	list, err := c.API().Discovered(ctx)
	if err != nil || len(list) > 1024 {
		t.Errorf("discovered clients: %d (cap 1024), %v", len(list), err)
	}
	if fi, err := os.Stat(filepath.Join(c.StateDir, "runtime.db")); err == nil {
		t.Logf("runtime.db %d KiB", fi.Size()>>10)
		if fi.Size() > 8<<20 {
			t.Errorf("runtime.db grew to %d MiB", fi.Size()>>20)
		}
	}
}

// bootNode does what n1 does when it boots: DHCP, a TFTP download, an NFS
// mount and read; then the admin lists the nodes.
func bootNode(ctx context.Context, node *testnet.NS, c *e2e.Controller) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := node.Command(cctx, "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", "/bin/true").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.99.0.10") {
		return fmt.Errorf("dhcp: %v\n%s", err, out)
	}
	out, err = node.Command(cctx, "curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{size_download}", "tftp://10.99.0.1/start4.elf").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(300<<10) {
		return fmt.Errorf("tftp: %v: %s", err, out)
	}
	if err := node.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		cl, err := nfs3client.MountDial(d.Dial, "10.99.0.1:2049", "10.99.0.1:2049", "/nodes/n1")
		if err != nil {
			return err
		}
		defer cl.Close()
		_ = cl.SetDeadline(time.Now().Add(10 * time.Second))
		etc, _, err := cl.Lookup(cl.Root, "etc")
		if err != nil {
			return err
		}
		fh, _, err := cl.Lookup(etc, "hostname")
		if err != nil {
			return err
		}
		if n, _, err := cl.Read(fh, 0, 100); err != nil || n != 3 {
			return fmt.Errorf("read %d bytes: %v", n, err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("nfs: %w", err)
	}
	if out, err := c.Run(cctx, "node", "ls"); err != nil || !strings.Contains(out, "n1") {
		return fmt.Errorf("node ls: %v\n%s", err, out)
	}
	return nil
}

func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
