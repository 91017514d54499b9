package nfsd

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzServeCall feeds every NFSv3 procedure arbitrary arguments behind a
// valid handle, as root, a user and AUTH_NONE, to the calls nfsd answers
// itself (the arguments are untrusted XDR from the boot network). None may
// panic; whatever they do stays inside the exports (temporary directories).
func FuzzServeCall(f *testing.F) {
	e, _, _ := nfsEnv(f)
	handles := [][]byte{
		e.handle(f, "/nodes/pi1", "/"),
		e.handle(f, "/nodes/pi1", "/etc"),
		e.handle(f, "/nodes/pi1", "/etc/hostname"),
		e.handle(f, "/volumes/www", "/"),
		e.handle(f, "/volumes/www", "/html/index.html"),
	}
	dir := func(i int) xdrArgs { return xdrArgs(nil).opaque(handles[i]) }
	seeds := []struct {
		proc   uint32
		handle uint8
		args   xdrArgs
	}{
		{procGetattr, 0, nil},
		{procSetattr, 2, xdrArgs(nil).modeSattr(0o4755).u32(0)},
		{procLookup, 1, xdrArgs(nil).str("hostname")},
		{procAccess, 2, xdrArgs(nil).u32(0x3f)},
		{procReadlink, 2, nil},
		{procRead, 2, xdrArgs(nil).u64(0).u32(4096)},
		{procWrite, 4, xdrArgs(nil).u64(3).u32(5).u32(writeUnstable).str("hello")},
		{procCreate, 0, xdrArgs(nil).str("f").u32(createGuarded).modeSattr(0o644)},
		{procCreate, 3, xdrArgs(nil).str("x").u32(createExclusive).u64(0x0102030405060708)},
		{procMkdir, 0, xdrArgs(nil).str("d").modeSattr(0o1777)},
		{procSymlink, 0, xdrArgs(nil).str("l").noSattr().str("/etc/hostname")},
		{procMknod, 0, xdrArgs(nil).str("c").u32(nf3Chr).modeSattr(0o600).u32(1).u32(3)},
		{procMknod, 3, xdrArgs(nil).str("p").u32(nf3Fifo).modeSattr(0o600)},
		{procRemove, 0, xdrArgs(nil).str("f")},
		{procRmdir, 0, xdrArgs(nil).str("d")},
		{procRename, 0, xdrArgs(nil).str("f").opaque(handles[1]).str("g")},
		{procLink, 2, dir(0).str("hard")},
		{procReaddir, 1, xdrArgs(nil).u64(1).u64(0).u32(4096)},
		{procReaddirplus, 3, xdrArgs(nil).u64(0).u64(0).u32(4096).u32(65536)},
		{procFsstat, 0, nil},
		{procFsinfo, 0, nil},
		{procPathconf, 0, nil},
		{procCommit, 4, xdrArgs(nil).u64(0).u32(0)},
	}
	for _, s := range seeds {
		f.Add(uint8(s.proc), s.handle, uint8(0), []byte(s.args))
	}
	creds := []testCred{credRoot, credUser, credNone}
	from := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 800}
	f.Fuzz(func(t *testing.T, proc, handle, who uint8, args []byte) {
		a := xdrArgs(nil).opaque(handles[int(handle)%len(handles)])
		rec := callRecord(7, uint32(proc)%(procCommit+1), creds[int(who)%len(creds)], append(a, args...))
		e.srv.serveCall(from, rec, func(rep []byte) error {
			if len(rep) < 28 || binary.BigEndian.Uint32(rep)&0x7fffffff != uint32(len(rep)-4) {
				t.Fatalf("reply record %x does not frame itself", rep)
			}
			return nil
		})
	})
}

// FuzzServerRecords sends arbitrary RPC records (any program, procedure,
// credential and arguments) to a running server over TCP: what nfsd does
// not answer itself reaches go-nfs, whose panics nothing could contain, so
// none may panic there either; the server keeps answering.
func FuzzServerRecords(f *testing.F) {
	_, addr, _ := nfsEnv(f)
	// The node's own layer is made by its first MOUNT; made here, before
	// the inputs, no input's MOUNT is still writing it when the test's
	// directory is removed (the server does not wait for a call whose
	// client has gone).
	mustMount(f, addr, "/nodes/pi1")
	call := func(prog, vers, proc uint32, args xdrArgs) []byte {
		w := []byte(nil)
		for _, v := range []uint32{9, 0, 2, prog, vers, proc, 0, 0, 0, 0} { // xid CALL v2 prog vers proc, AUTH_NULL cred and verifier
			w = binary.BigEndian.AppendUint32(w, v)
		}
		return append(w, args...)
	}
	f.Add(call(nfsProgram, 3, 0, nil))
	f.Add(call(mountProgram, 3, 1, xdrArgs(nil).str("/nodes/pi1")))
	f.Add(call(mountProgram, 3, 3, xdrArgs(nil).str("/nodes/pi1")))
	f.Add(call(mountProgram, 3, 5, nil))
	f.Add(call(nfsProgram, 3, procRead, xdrArgs(nil).opaque([]byte("short")).u64(0).u32(10)))
	f.Add(call(nfsProgram, 3, procReaddir, xdrArgs(nil).u32(1<<30)))
	f.Add(call(nfsProgram, 3, 22, nil))
	f.Add(call(nfsProgram, 2, 1, nil))
	f.Add(call(100021, 4, 1, nil)) // NLM
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rec := binary.BigEndian.AppendUint32(nil, uint32(len(body))|0x80000000)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(append(rec, body...)); err != nil {
			return
		}
		// The server reads the record, then the end of the stream, and
		// closes after answering (or not): a panic would have ended the
		// process.
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		// The server still answers a NULL call.
		c2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("server gone after %x: %v", body, err)
		}
		defer c2.Close()
		null := call(nfsProgram, 3, 0, nil)
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c2.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(null))|0x80000000), null...)); err != nil {
			t.Fatalf("server gone after %x: %v", body, err)
		}
		if _, err := io.ReadFull(c2, make([]byte, 28)); err != nil {
			t.Fatalf("no answer to NULL after %x: %v", body, err)
		}
	})
}
