package nfsd

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// Helpers for talking NFSv3 to the server in-process with go-nfs-client
// (which also reconnects by itself when the server restarts, as the Linux
// client does).

var rootAuth = rpc.NewAuthUnix("test", 0, 0).Auth()

func dialRPC(t testing.TB, addr string) *rpc.Client {
	t.Helper()
	// go-nfs-client binds a random local port and does not retry a taken
	// one (unless privileged): retry here.
	var c *rpc.Client
	var err error
	for i := 0; i < 20; i++ {
		if c, err = rpc.DialTCP("tcp", addr, false); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mount returns a target, or the mount error.
func mount(t testing.TB, addr, dirpath string) (*nfsc.Target, error) {
	t.Helper()
	m := &nfsc.Mount{Client: dialRPC(t, addr)}
	return m.Mount(dirpath, rootAuth)
}

func mustMount(t testing.TB, addr, dirpath string) *nfsc.Target {
	t.Helper()
	v, err := mount(t, addr, dirpath)
	if err != nil {
		t.Fatalf("mount %s: %v", dirpath, err)
	}
	return v
}

// rootFH returns the handle a mount returned (the target keeps it private;
// looking up "." gives it back).
func rootFH(t testing.TB, v *nfsc.Target) []byte {
	t.Helper()
	_, fh, err := v.Lookup(".")
	if err != nil {
		t.Fatal(err)
	}
	return fh
}

func nfsStatus(err error) uint32 {
	var e *nfsc.Error
	switch {
	case err == nil:
		return nfsc.NFS3Ok
	case errors.As(err, &e):
		return e.ErrorNum
	case errors.Is(err, nfsc.NFS3Error(nfsc.NFS3ErrNoEnt)):
		return nfsc.NFS3ErrNoEnt
	case errors.Is(err, nfsc.NFS3Error(nfsc.NFS3ErrExist)):
		return nfsc.NFS3ErrExist
	case errors.Is(err, nfsc.NFS3Error(nfsc.NFS3ErrPerm)):
		return nfsc.NFS3ErrPerm
	}
	return 0xffffffff
}

func header(proc uint32, auth rpc.Auth) rpc.Header {
	return rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: proc, Cred: auth, Verf: rpc.AuthNull}
}

// call sends a raw NFSv3 request and returns the status and the rest of
// the reply.
func call(t testing.TB, c *rpc.Client, args any) (uint32, io.ReadSeeker) {
	t.Helper()
	res, err := c.Call(args)
	if err != nil {
		t.Fatalf("rpc: %v", err)
	}
	st, err := xdr.ReadUint32(res)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st, res
}

func getattr(t testing.TB, c *rpc.Client, fh []byte) (nfsc.Fattr, uint32) {
	t.Helper()
	st, res := call(t, c, &struct {
		rpc.Header
		FH []byte
	}{header(nfsc.NFSProc3GetAttr, rootAuth), fh})
	var a nfsc.Fattr
	if st == nfsc.NFS3Ok {
		if err := xdr.Read(res, &a); err != nil {
			t.Fatal(err)
		}
	}
	return a, st
}

func readFH(t testing.TB, c *rpc.Client, fh []byte) (string, uint32) {
	t.Helper()
	st, res := call(t, c, &struct {
		rpc.Header
		FH     []byte
		Offset uint64
		Count  uint32
	}{header(nfsc.NFSProc3Read, rootAuth), fh, 0, 1 << 16})
	if st != nfsc.NFS3Ok {
		return "", st
	}
	var attr nfsc.PostOpAttr
	if err := xdr.Read(res, &attr); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Count uint32
		EOF   bool
		Data  []byte
	}
	if err := xdr.Read(res, &body); err != nil {
		t.Fatal(err)
	}
	return string(body.Data), st
}

func lookupFH(t testing.TB, c *rpc.Client, dir []byte, name string) ([]byte, uint32) {
	t.Helper()
	st, res := call(t, c, &struct {
		rpc.Header
		Dir  []byte
		Name string
	}{header(nfsc.NFSProc3Lookup, rootAuth), dir, name})
	if st != nfsc.NFS3Ok {
		return nil, st
	}
	fh, err := xdr.ReadOpaque(res)
	if err != nil {
		t.Fatal(err)
	}
	return fh, st
}

func readTarget(t testing.TB, v *nfsc.Target, p string) string {
	t.Helper()
	f, err := v.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func writeTarget(t testing.TB, v *nfsc.Target, p, content string) {
	t.Helper()
	f, err := v.OpenFile(p, 0o644)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// eventually retries f for a while: a restarted server takes a moment to
// accept again and the client reconnects on its own.
func eventually(t testing.TB, f func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if f() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition never held")
}
