package nfsd

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// BenchmarkUntarCalls is the nfs bench's untar row below the network: per
// file a CREATE (GUARDED, mode) and a 4 KiB WRITE into a node root's
// directory, 100 files a directory, as the Linux client sends them.
func BenchmarkUntarCalls(b *testing.B) {
	e := newEnv(b)
	img := newImage(b)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "127.0.0.1")
	fh := func(rep []byte) []byte {
		st := binary.BigEndian.Uint32(rep[28:])
		if st != nfs3OK {
			b.Fatalf("status %d", st)
		}
		n := binary.BigEndian.Uint32(rep[36:])
		return append([]byte(nil), rep[40:40+n]...)
	}
	call := func(proc uint32, args xdrArgs) []byte {
		var out []byte
		if !e.srv.serveCall(e.nodes.tcpAddr("pi1"), callRecord(1, proc, credRoot, args), func(w []byte) error { out = append(out[:0], w...); return nil }) {
			b.Fatalf("proc %d left to go-nfs", proc)
		}
		return out
	}
	x, err := e.srv.exportFor("/nodes/pi1")
	if err != nil {
		b.Fatal(err)
	}
	root := (&handler{s: e.srv}).ToHandle(x, pathElems("/"))
	top := fh(call(procMkdir, xdrArgs(nil).opaque(root).str("untar").modeSattr(0o755)))
	data := make([]byte, 4096)
	var dir []byte
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%100 == 0 {
			dir = fh(call(procMkdir, xdrArgs(nil).opaque(top).str(fmt.Sprintf("d%05d", i/100)).modeSattr(0o755)))
		}
		f := fh(call(procCreate, xdrArgs(nil).opaque(dir).str(fmt.Sprintf("f%03d", i%100)).u32(createGuarded).modeSattr(0o644)))
		rep := call(procWrite, xdrArgs(nil).opaque(f).u64(0).u32(4096).u32(0).opaque(data))
		if st := binary.BigEndian.Uint32(rep[28:]); st != nfs3OK {
			b.Fatalf("write: status %d", st)
		}
	}
}
