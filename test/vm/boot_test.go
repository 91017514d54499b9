package vm

import (
	"context"
	"strings"
	"sync"
	"testing"
)

// The harness end to end: a guest boots the PVH vmlinux directly with a
// static address (no DHCP), mounts a busybox root from the stand-in go-nfs
// server, runs the standard checks, performs one PXE-WAIT handshake and
// reaches NETBOOT-OK.
func TestDirectBootStaticNFSRoot(t *testing.T) {
	n := NewNet(t, "vmdirect")
	a := PrepareT(t)
	root := rootfsDir(t, RootfsSpec{
		Checks: StandardChecks(),
		Script: `wait_host handshake && chk after-wait 'test -x /bin/busybox'
chk env-from-initramfs 'test "$PXE_ADDR_MODE" = static && test -n "$PXE_NFS_OPTS"'
chk nfs-mount-again 'mkdir -p /mnt/again && nfs_mount / /mnt/again && test -x /mnt/again/bin/busybox && umount /mnt/again'`,
	})
	serveGoNFS(t, n, root)

	var waits []string
	r := n.Boot(t, Machine{
		Name:    "direct0",
		Kernel:  a.Vmlinux,
		Initrd:  a.Initrd,
		Cmdline: KernelArgs{NFSRoot: n.Host().String() + ":/", Static: n.GuestAddr(0), Server: n.Host(), Hostname: "direct0"}.String(),
		OnWait: func(ctx context.Context, name string) error {
			waits = append(waits, name)
			return nil
		},
	})
	RequirePassed(t, r)
	t.Logf("%s", r.Summary())
	if len(waits) != 1 || waits[0] != "handshake" {
		t.Errorf("OnWait calls = %v, want [handshake]", waits)
	}
	if s, ok := r.Stage("static-ip"); !ok || !strings.Contains(s.Detail, n.GuestAddr(0).String()) {
		t.Errorf("static-ip stage = %+v, want the address %s", s, n.GuestAddr(0))
	}
	if got, want := r.ChecksOK+r.ChecksXFail, len(StandardChecks())+3; got != want {
		t.Errorf("checks run = %d, want %d", got, want)
	}
}

// Two guests at once on one network (as the demo boots two nodes), one
// configured with ip=, the other with the short pxeip=/pxegw= form; each
// reaches the host and the other guest.
func TestTwoGuestsAtOnce(t *testing.T) {
	n := NewNet(t, "vmtwo")
	a := PrepareT(t)
	g0, g1 := n.GuestAddr(0), n.GuestAddr(1)
	root := rootfsDir(t, RootfsSpec{
		Checks: []Check{
			{Name: "ping-host", Script: `ping -c 1 -W 5 "$PXE_SERVER"`},
			{Name: "own-address", Script: `ip -4 addr show dev "$PXE_IF" | grep -q "inet $PXE_IP/24"`},
		},
		// Meet in the middle: each guest waits for the harness until both
		// have reached userspace, pings the other, and waits again so that
		// neither powers off while the other still pings it.
		Script: `wait_host both-up && chk ping-peer 'ping -c 1 -W 5 $(cat /proc/cmdline | sed -n "s/.*peer=\([^ ]*\).*/\1/p")'
wait_host both-pinged`,
	})
	serveGoNFS(t, n, root)

	onWait := barrier(2)
	host := n.Host()
	m0 := Machine{Name: "two0", Kernel: a.Vmlinux, Initrd: a.Initrd, OnWait: onWait,
		Cmdline: KernelArgs{NFSRoot: host.String() + ":/", Static: g0, Server: host, Extra: []string{"peer=" + g1.Addr().String()}}.String()}
	m1 := Machine{Name: "two1", Kernel: a.Vmlinux, Initrd: a.Initrd, OnWait: onWait,
		Cmdline: KernelArgs{NFSRoot: host.String() + ":/", Extra: []string{"pxeip=" + g1.String(), "pxegw=" + host.String(), "peer=" + g0.Addr().String()}}.String()}
	guests := []*Guest{n.Start(t, m0), n.Start(t, m1)}
	for _, g := range guests {
		r := g.Wait()
		RequirePassed(t, r)
		t.Logf("%s", r.Summary())
	}
}

// A guest whose root cannot be mounted (no server listening) ends by itself
// with PXE-FAIL instead of hanging until the timeout, and the result says why.
func TestMountFailureEndsGuest(t *testing.T) {
	n := NewNet(t, "vmfail")
	a := PrepareT(t)
	r := n.Boot(t, Machine{Name: "fail0", Kernel: a.Vmlinux, Initrd: a.Initrd,
		Cmdline: KernelArgs{NFSRoot: n.Host().String() + ":/nowhere", Static: n.GuestAddr(0)}.String()})
	if r.Passed() || r.TimedOut || !strings.HasPrefix(r.Fail, "nfs mount 10.99.0.1:/nowhere") {
		t.Fatalf("want a quick PXE-FAIL, got %s\n%s", r.Summary(), r.Tail(20))
	}
	if !strings.Contains(r.Tail(10), "PXE-FAIL") {
		t.Errorf("console tail lacks the failure:\n%s", r.Tail(10))
	}
	t.Logf("failed as expected after %.1fs: %s", r.Elapsed.Seconds(), r.Fail)
}

// The restart flow the nfsd tests need: the guest stops at wait_host, the
// test replaces the NFS server, the guest goes on and reports. The
// stand-in's handles are random IDs in RAM, so its restart breaks the root
// (recipe pitfall 17: every path lookup then fails with ESTALE); the init,
// running from RAM, still reports the failures and the final marker.
func TestServerRestartDuringRun(t *testing.T) {
	n := NewNet(t, "vmrestart")
	a := PrepareT(t)
	root := rootfsDir(t, RootfsSpec{
		Checks: []Check{{Name: "before-restart", Script: `cat /etc/hostname`}},
		Script: `wait_host restart
soft after-restart-ls 'ls /bin >/dev/null'
soft after-restart-exec '/bin/true'
chk init-survived 'echo alive'`,
	})
	stop := serveGoNFS(t, n, root)
	restarts := 0
	r := n.Boot(t, Machine{Name: "restart0", Kernel: a.Vmlinux, Initrd: a.Initrd,
		Cmdline: KernelArgs{NFSRoot: n.Host().String() + ":/", Static: n.GuestAddr(0)}.String(),
		OnWait: func(ctx context.Context, name string) error {
			stop()
			serveGoNFS(t, n, root)
			restarts++
			return nil
		}})
	RequirePassed(t, r)
	t.Logf("%s", r.Summary())
	if restarts != 1 {
		t.Errorf("server restarted %d times, want 1", restarts)
	}
	for _, c := range r.Checks {
		t.Logf("after a go-nfs restart: CHECK %s %s %s", c.Status, c.Name, c.Detail)
	}
}

// barrier returns an OnWait that releases a wait_host NAME once n guests
// are waiting on NAME.
func barrier(n int) func(ctx context.Context, name string) error {
	var mu sync.Mutex
	waiting := map[string]int{}
	released := map[string]chan struct{}{}
	return func(ctx context.Context, name string) error {
		mu.Lock()
		if released[name] == nil {
			released[name] = make(chan struct{})
		}
		ch := released[name]
		if waiting[name]++; waiting[name] == n {
			close(ch)
		}
		mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
