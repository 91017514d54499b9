package nfsd

import (
	"bytes"
	"io"
	"testing"

	dto "github.com/prometheus/client_model/go"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// TestFastAttrMatchesGoNFS: the GETATTR and ACCESS replies nfsd writes
// itself are byte-for-byte go-nfs's, and the cases left to go-nfs are
// answered as before.
func TestFastAttrMatchesGoNFS(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	writeTarget(t, v, "/tmp/own", "own layer file\n")
	fhs := map[string][]byte{"/": rootFH(t, v)}
	for _, p := range []string{"/etc", "/etc/hostname", "/etc/passwd", "/tmp/own", "/dev/null", "/usr/bin/sudo", "/bin"} {
		_, fh, err := v.Lookup(p)
		if err != nil {
			t.Fatal(p, err)
		}
		fhs[p] = fh
	}
	if err := v.Remove("/etc/passwd"); err != nil { // its handle goes stale
		t.Fatal(err)
	}
	docs := mustMount(t, addr, "/volumes/docs") // read-only
	fhs["docs"] = rootFH(t, docs)
	forged := append([]byte{}, fhs["/etc"]...)
	forged[20] ^= 1
	type req struct {
		proc uint32
		fh   []byte
		mask uint32
		fast bool
	}
	var reqs []req
	for _, p := range []string{"/", "/etc", "/etc/hostname", "/tmp/own", "/dev/null", "/usr/bin/sudo", "/bin", "docs"} {
		reqs = append(reqs,
			req{nfsc.NFSProc3GetAttr, fhs[p], 0, true},
			req{nfsc.NFSProc3Access, fhs[p], 0x3f, true},
			req{nfsc.NFSProc3Access, fhs[p], 0x01, true})
	}
	reqs = append(reqs,
		req{nfsc.NFSProc3GetAttr, fhs["/etc/passwd"], 0, false},
		req{nfsc.NFSProc3Access, fhs["/etc/passwd"], 0x3f, false},
		req{nfsc.NFSProc3GetAttr, forged, 0, false},
		req{nfsc.NFSProc3Access, forged, 0x3f, false})
	replies := func() [][]byte {
		c := dialRPC(t, addr)
		var out [][]byte
		for _, r := range reqs {
			var args any = &struct {
				rpc.Header
				FH []byte
			}{header(r.proc, rootAuth), r.fh}
			if r.proc == nfsc.NFSProc3Access {
				args = &struct {
					rpc.Header
					FH   []byte
					Mask uint32
				}{header(r.proc, rootAuth), r.fh, r.mask}
			}
			res, err := c.Call(args)
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
		_ = e.srv.metrics.fastAttrs.Write(&m)
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
	if n := count() - before; n != want {
		t.Fatalf("%d GETATTR/ACCESS answered directly, want %d (the rest go to go-nfs)", n, want)
	}
	if len(fast[0]) != 4+84 || fast[0][3] != 0 {
		t.Fatalf("getattr of the root: %x", fast[0])
	}
	e.cfg.GoNFSLookup = true
	e.restart(addr)
	eventually(t, func() bool { _, st := getattr(t, dialRPC(t, addr), fhs["/etc"]); return st == nfsc.NFS3Ok })
	slow := replies()
	for i, r := range reqs {
		if !bytes.Equal(mtimeOnly(fast[i], r.proc), mtimeOnly(slow[i], r.proc)) {
			t.Errorf("request %d (proc %d mask %#x): nfsd %d bytes %x... go-nfs %d bytes %x...", i, r.proc, r.mask,
				len(fast[i]), head(fast[i]), len(slow[i]), head(slow[i]))
		}
	}
}
