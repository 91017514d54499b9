package nfsd

import (
	"encoding/binary"
	"fmt"
	"net"

	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	billy "github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// BenchmarkBootStorm is the NFS part of the boot storm (test/bench/storm,
// issue #7) without the network: every iteration is one node's first boot
// on an image that other nodes already booted — MOUNT, LOOKUP component by
// component with a dentry cache, READDIRPLUS of the directories systemd
// and udev list, one READ per working-set file — driven through the
// handler with the calls, in the order, go-nfs v0.0.4 makes for each
// procedure (READ and LOOKUP through fastCall, as served). The node's own layer and
// per-export caches are cold, as at a real boot; what is shared between
// nodes on one image is warm. ns/nfsop is the figure to compare.
//
//	go test ./nfsd/ -run '^$' -bench BootStorm -benchmem -cpuprofile /tmp/nfsd.prof
func BenchmarkBootStorm(b *testing.B) {
	e := newEnv(b)
	img := filepath.Join(b.TempDir(), "image")
	dirs, files := buildStormImage(b, img)
	h := &handler{s: e.srv}
	// Warm what nodes on one image share (page cache, dentries, the
	// image's inode index) with two boots outside the timing.
	var ops int
	for i := 0; i < 2; i++ {
		e.nodes.set(Node{Name: "warm" + strconv.Itoa(i), ImageRoot: img}, stormAddr(1<<20+i).IP.String())
		ops = stormBoot(b, e, h, "warm"+strconv.Itoa(i), img, dirs, files)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := "pi" + strconv.Itoa(i)
		e.nodes.set(Node{Name: name, ImageRoot: img}, stormAddr(i).IP.String())
		if _, err := e.srv.exportFor(nodeExportPath(name)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		stormBoot(b, e, h, name, img, dirs, files)
	}
	// Other processes share the machine's CPUs: the process's CPU time per
	// operation is steadier than wall time (it still counts the set-up
	// of new nodes between boots, a few percent).
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ops), "ns/nfsop")
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*ops), "cpu-ns/nfsop")
	b.ReportMetric(float64(ops), "nfsops/boot")
}

// processCPU is the user+system CPU time of the process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// buildStormImage makes a Debian-like tree: the boot directories with
// many entries each, and a working set of 300 files 3–6 levels deep.
func buildStormImage(b *testing.B, root string) (dirs, files []string) {
	dirs = []string{"etc", "etc/systemd/system", "usr/lib/systemd/system", "usr/lib/udev/rules.d", "etc/udev/rules.d"}
	var tree []imgFile
	add := func(p string, n int) {
		tree = append(tree, imgFile{path: p, mode: 0o644, content: strings.Repeat("x", n)})
	}
	for i := 0; i < 60; i++ {
		add(fmt.Sprintf("etc/conf%02d.conf", i), 200)
	}
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("etc/systemd/system/multi-user.target.wants/unit%02d.service", i), 300)
	}
	for i := 0; i < 150; i++ {
		add(fmt.Sprintf("usr/lib/systemd/system/unit%03d.service", i), 600)
	}
	for i := 0; i < 80; i++ {
		add(fmt.Sprintf("usr/lib/udev/rules.d/%02d-rule.rules", i), 900)
	}
	for i := 0; i < 10; i++ {
		add(fmt.Sprintf("etc/udev/rules.d/%02d-local.rules", i), 100)
	}
	for i := 0; i < 100; i++ {
		add(fmt.Sprintf("usr/lib/aarch64-linux-gnu/lib%03d.so.1", i), 8192)
	}
	for i := 0; i < 60; i++ {
		add(fmt.Sprintf("usr/bin/tool%02d", i), 4096)
	}
	for i := 0; i < 30; i++ {
		add(fmt.Sprintf("usr/share/locale/l%02d/LC_MESSAGES/sys.mo", i), 1000)
	}
	buildTree(b, root, tree)
	for _, f := range tree {
		if len(files) < 300 && !strings.HasPrefix(f.path, "etc/conf") {
			files = append(files, f.path)
		}
	}
	return dirs, files
}

// stormBoot is one node's boot; it returns the number of NFS operations.
func stormBoot(b *testing.B, e *env, h *handler, name, img string, dirs, files []string) int {
	x, err := e.srv.exportFor(nodeExportPath(name))
	if err != nil {
		b.Fatal(err)
	}
	ops := 1
	from := e.nodes.tcpAddr(name)
	handles := map[string][]byte{"": h.ToHandle(x, nil)} // MOUNT
	var lrec []byte
	var resolve func(p string) []byte
	resolve = func(p string) []byte {
		if fh, ok := handles[p]; ok {
			return fh
		}
		dir, base := path.Split(p)
		parent := resolve(strings.TrimSuffix(dir, "/"))
		var fh []byte
		lrec = lookupRecord(lrec[:0], parent, base)
		if !e.srv.fastCall(from, lrec, func(w []byte) error { fh = lookupReplyHandle(w); return nil }) {
			fh = benchLookup(b, h, parent, base) // go-nfs answers
		}
		if len(fh) == 0 {
			b.Fatalf("lookup %s: no handle", p)
		}
		ops++
		handles[p] = fh
		return fh
	}
	for _, d := range dirs {
		benchReaddirplus(b, h, resolve(d))
		ops++
	}
	rec := make([]byte, 0, 128)
	for _, f := range files {
		rec = readRecord(rec[:0], resolve(f), 0, 1<<20)
		if !e.srv.fastCall(from, rec, func([]byte) error { return nil }) {
			b.Fatalf("fastRead of %s refused", f)
		}
		ops++
	}
	return ops
}

// benchLookup is go-nfs's onLookup, call for call.
func benchLookup(b *testing.B, h *handler, dirFH []byte, name string) []byte {
	fs, p, err := h.FromHandle(dirFH)
	if err != nil {
		b.Fatal(err)
	}
	if fi, err := fs.Lstat(fs.Join(p...)); err != nil || !fi.IsDir() {
		b.Fatalf("lookup dir %v: %v", p, err)
	}
	reqPath := append(p, name)
	if _, err := fs.Lstat(fs.Join(reqPath...)); err != nil {
		b.Fatal(err)
	}
	fh := h.ToHandle(fs, reqPath)
	if len(fh) == 0 {
		b.Fatalf("no handle for %v", reqPath)
	}
	benchTryStat(fs, reqPath)
	benchTryStat(fs, p)
	return fh
}

func benchTryStat(fs billy.Filesystem, p []string) *nfs.FileAttribute {
	full := fs.Join(p...)
	fi, err := fs.Lstat(full)
	if err != nil {
		return nil
	}
	return nfs.ToFileAttribute(fi, full)
}

// benchReaddirplus is go-nfs's onReadDirPlus for a first (and only) page,
// with its getDirListingWithVerifier.
func benchReaddirplus(b *testing.B, h *handler, fh []byte) {
	fs, p, err := h.FromHandle(fh)
	if err != nil {
		b.Fatal(err)
	}
	fs2, p2, err := h.FromHandle(fh)
	if err != nil {
		b.Fatal(err)
	}
	full := fs2.Join(p2...)
	contents, err := fs2.ReadDir(full)
	if err != nil {
		b.Fatal(err)
	}
	h.VerifierFor(full, contents)
	if len(p) > 0 {
		benchTryStat(fs, p[:len(p)-1])
	}
	benchTryStat(fs, p)
	for _, c := range contents {
		fp := append(append([]string{}, p...), c.Name())
		if len(h.ToHandle(fs, fp)) == 0 {
			b.Fatalf("no handle for %v", fp)
		}
		nfs.ToFileAttribute(c, path.Join(fp...))
	}
	benchTryStat(fs, p)
}

// lookupRecord builds an NFSv3 LOOKUP call record (with its record mark).
func lookupRecord(w []byte, dir []byte, name string) []byte {
	u32 := func(v uint32) { w = binary.BigEndian.AppendUint32(w, v) }
	u32(0)
	for _, v := range []uint32{1, 0, 2, nfsProgram, 3, procLookup, 0, 0, 0, 0} {
		u32(v)
	}
	for _, o := range [][]byte{dir, []byte(name)} {
		u32(uint32(len(o)))
		w = append(w, o...)
		for len(w)%4 != 0 {
			w = append(w, 0)
		}
	}
	return w
}

// lookupReplyHandle returns the handle of an NFS3_OK LOOKUP reply record.
func lookupReplyHandle(w []byte) []byte {
	const at = 4 + 24 // record mark, RPC reply header
	if len(w) < at+8+handleLen || binary.BigEndian.Uint32(w[at:]) != 0 {
		return nil
	}
	return append([]byte(nil), w[at+8:at+8+handleLen]...)
}

// readRecord builds an NFSv3 READ call record (with its record mark).
func readRecord(w []byte, fh []byte, off uint64, count uint32) []byte {
	u32 := func(v uint32) { w = binary.BigEndian.AppendUint32(w, v) }
	u32(0) // record mark, unused by parseRead
	for _, v := range []uint32{1, 0, 2, nfsProgram, 3, procRead, 0, 0, 0, 0} {
		u32(v) // xid, CALL, rpcvers, prog, vers, proc, AUTH_NULL cred and verifier
	}
	u32(uint32(len(fh)))
	w = append(w, fh...)
	for len(w)%4 != 0 {
		w = append(w, 0)
	}
	w = binary.BigEndian.AppendUint64(w, off)
	u32(count)
	return w
}

// stormAddr is the address of the i-th booting node (10.0.0.0/8).
func stormAddr(i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)), Port: 700}
}
