package vm

import (
	"testing"
	"time"
)

// BenchmarkDirectBootMarkerOnly times the fastest guest the harness offers:
// PVH vmlinux, static address, stand-in go-nfs root, init prints the marker
// at once. Run: go test -run - -bench DirectBoot -benchtime 3x ./test/vm
// (as root). Metrics are seconds since QEMU start.
func BenchmarkDirectBootMarkerOnly(b *testing.B) {
	n := NewNet(b, "vmbench")
	a := PrepareT(b)
	root := b.TempDir()
	if err := BuildRootfs(root, RootfsSpec{}); err != nil {
		b.Fatal(err)
	}
	serveGoNFS(b, n, root)
	var initrd, mounted, userspace, done, wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r := n.Boot(b, Machine{Name: "bench", Tap: tapFor(n, i), Kernel: a.Vmlinux, Initrd: a.Initrd,
			Cmdline: KernelArgs{NFSRoot: n.Host().String() + ":/", Static: n.GuestAddr(0)}.String()})
		wall += time.Since(start)
		RequirePassed(b, r)
		s1, _ := r.Stage("initrd-start")
		s2, _ := r.Stage("nfs-mounted")
		s3, _ := r.Stage("userspace")
		initrd, mounted, userspace, done = initrd+s1.At, mounted+s2.At, userspace+s3.At, done+r.Elapsed
	}
	per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.ReportMetric(per(initrd), "s-initrd")
	b.ReportMetric(per(mounted), "s-nfs-mounted")
	b.ReportMetric(per(userspace), "s-userspace")
	b.ReportMetric(per(done), "s-qemu-exit")
	b.ReportMetric(per(wall-done), "s-harness-overhead")
}

// tapFor reuses one tap per benchmark run: the first boot creates tap0.
func tapFor(n *Net, i int) string {
	if i == 0 {
		return n.NewTap()
	}
	return "tap0"
}
