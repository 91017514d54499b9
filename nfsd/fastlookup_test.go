package nfsd

import (
	"bytes"
	"io"
	"testing"

	dto "github.com/prometheus/client_model/go"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// TestFastLookupMatchesGoNFS: the LOOKUP replies nfsd writes itself are
// byte-for-byte what go-nfs answers for the same requests, and the cases
// nfsd leaves to go-nfs are answered as before.
func TestFastLookupMatchesGoNFS(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	writeTarget(t, v, "/tmp/own", "own layer file\n")
	if err := v.Remove("/etc/shadow"); err != nil { // a whiteout
		t.Fatal(err)
	}
	fhs := map[string][]byte{"/": rootFH(t, v)}
	for _, p := range []string{"/etc", "/usr/bin", "/tmp", "/etc/hostname", "/dev"} {
		_, fh, err := v.Lookup(p)
		if err != nil {
			t.Fatal(p, err)
		}
		fhs[p] = fh
	}
	forged := append([]byte{}, fhs["/etc"]...)
	forged[20] ^= 1
	type req struct {
		dir  []byte
		name string
		fast bool // answered below go-nfs
	}
	reqs := []req{
		{fhs["/etc"], "hostname", true},
		{fhs["/etc"], "passwd", true},
		{fhs["/"], "etc", true},
		{fhs["/"], "bin", true}, // a symlink
		{fhs["/usr/bin"], "sudo", true},
		{fhs["/usr/bin"], "view", true}, // a hard link
		{fhs["/tmp"], "own", true},
		{fhs["/dev"], "null", true},
		{fhs["/etc"], "nope", true},   // NOENT
		{fhs["/etc"], "shadow", true}, // whiteout: NOENT
		{fhs["/etc"], ".", false},
		{fhs["/etc"], "..", false},
		{fhs["/"], "..", false},
		{fhs["/etc"], "a/b", false},
		{fhs["/etc/hostname"], "x", false}, // not a directory
		{forged, "hostname", false},
	}
	replies := func() [][]byte {
		c := dialRPC(t, addr)
		var out [][]byte
		for _, r := range reqs {
			res, err := c.Call(&struct {
				rpc.Header
				Dir  []byte
				Name string
			}{header(nfsc.NFSProc3Lookup, rootAuth), r.dir, r.name})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res)
			out = append(out, b)
		}
		return out
	}
	count := func() int {
		var m dto.Metric
		_ = e.srv.metrics.fastLookups.Write(&m)
		return int(m.GetCounter().GetValue())
	}
	before := count()
	fast := replies()
	want := 0
	for _, r := range reqs {
		if r.fast {
			want++
		}
	}
	status := func(b []byte) uint32 { return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) }
	if st := status(fast[0]); st != nfsc.NFS3Ok || len(fast[0]) != 4+4+handleLen+2*(4+84) {
		t.Fatalf("lookup of hostname: status %d, %d bytes", st, len(fast[0]))
	}
	if st := status(fast[8]); st != nfsc.NFS3ErrNoEnt {
		t.Fatalf("lookup of a missing name: status %d", st)
	}
	if n := count() - before; n != want {
		t.Fatalf("%d LOOKUPs answered directly, want %d (the rest go to go-nfs)", n, want)
	}
	e.cfg.GoNFSLookup = true
	e.restart(addr)
	eventually(t, func() bool { _, st := getattr(t, dialRPC(t, addr), fhs["/etc"]); return st == nfsc.NFS3Ok })
	slow := replies()
	for i, r := range reqs {
		if !bytes.Equal(mtimeOnly(fast[i], procLookup), mtimeOnly(slow[i], procLookup)) {
			t.Errorf("request %d (%q): nfsd %d bytes %x... go-nfs %d bytes %x...", i, r.name,
				len(fast[i]), head(fast[i]), len(slow[i]), head(slow[i]))
		}
	}
}
