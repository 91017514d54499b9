package nfsd

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// TestFastReadMatchesGoNFS: the READ replies nfsd writes itself are
// byte-for-byte what go-nfs answers for the same requests.
func TestFastReadMatchesGoNFS(t *testing.T) {
	e, addr, img := nfsEnv(t)
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i * 31)
	}
	if err := os.WriteFile(filepath.Join(img, "var/big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	v := mustMount(t, addr, "/nodes/pi1")
	writeTarget(t, v, "/tmp/own", "own layer file\n")
	fhs := map[string][]byte{}
	for _, p := range []string{"/etc/hostname", "/var/big", "/tmp/own", "/etc", "/dev/null"} {
		_, fh, err := v.Lookup(p)
		if err != nil {
			t.Fatal(p, err)
		}
		fhs[p] = fh
	}
	forged := append([]byte{}, fhs["/etc/hostname"]...)
	forged[20] ^= 1
	type req struct {
		fh     []byte
		offset uint64
		count  uint32
	}
	reqs := []req{
		{fhs["/etc/hostname"], 0, 4096},
		{fhs["/etc/hostname"], 2, 3},
		{fhs["/etc/hostname"], 6, 10},
		{fhs["/etc/hostname"], 100, 10},
		{fhs["/etc/hostname"], 0, 0},
		{fhs["/var/big"], 0, 1 << 20},
		{fhs["/var/big"], 1<<20 + 5, 1 << 20},
		{fhs["/var/big"], 3 << 20, 1 << 20},
		{fhs["/tmp/own"], 0, 1 << 20},
		{fhs["/etc"], 0, 100},
		{fhs["/dev/null"], 0, 100},
		{forged, 0, 100},
	}
	replies := func() [][]byte {
		c := dialRPC(t, addr)
		var out [][]byte
		for _, r := range reqs {
			res, err := c.Call(&struct {
				rpc.Header
				FH     []byte
				Offset uint64
				Count  uint32
			}{header(nfsc.NFSProc3Read, rootAuth), r.fh, r.offset, r.count})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res)
			out = append(out, b)
		}
		return out
	}
	fast := replies()
	var m dto.Metric
	_ = e.srv.metrics.fastReads.Write(&m)
	if n := m.GetCounter().GetValue(); n != 9 {
		t.Fatalf("%v READs answered directly, want 9 (the rest go to go-nfs)", n)
	}
	e.cfg.GoNFSRead = true
	e.restart(addr)
	eventually(t, func() bool { _, st := getattr(t, dialRPC(t, addr), fhs["/etc"]); return st == nfsc.NFS3Ok })
	slow := replies()
	for i := range reqs {
		if !bytes.Equal(mtimeOnly(fast[i], procRead), mtimeOnly(slow[i], procRead)) {
			t.Errorf("request %d (offset %d count %d): nfsd %d bytes %x... go-nfs %d bytes %x...", i, reqs[i].offset, reqs[i].count,
				len(fast[i]), head(fast[i]), len(slow[i]), head(slow[i]))
		}
	}
	if len(fast[5]) < 1<<20 {
		t.Fatalf("big read returned %d bytes", len(fast[5]))
	}
}

func head(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}
