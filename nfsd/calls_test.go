package nfsd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Byte-level tests of the calls nfsd answers below go-nfs: records are
// built by hand, fed to serveCall as the fan-out does, and the replies
// compared word by word.

type testCred struct {
	flavor   uint32
	uid, gid uint32
	gids     []uint32
	body     []byte // raw body instead (malformed credentials)
}

func unixCred(uid, gid uint32, gids ...uint32) testCred {
	return testCred{flavor: authUnix, uid: uid, gid: gid, gids: gids}
}

var (
	credRoot = unixCred(0, 0)
	credUser = unixCred(1000, 1000)
	credNone = testCred{flavor: authNone}
)

func (c testCred) encode() []byte {
	if c.body != nil || c.flavor != authUnix {
		return c.body
	}
	var b []byte
	u := func(v uint32) { b = binary.BigEndian.AppendUint32(b, v) }
	u(0) // stamp
	u(4) // machine name
	b = append(b, "node"...)
	u(c.uid)
	u(c.gid)
	u(uint32(len(c.gids)))
	for _, g := range c.gids {
		u(g)
	}
	return b
}

// xdrArgs builds call arguments.
type xdrArgs []byte

func (a xdrArgs) u32(v uint32) xdrArgs { return binary.BigEndian.AppendUint32(a, v) }
func (a xdrArgs) u64(v uint64) xdrArgs { return binary.BigEndian.AppendUint64(a, v) }
func (a xdrArgs) opaque(p []byte) xdrArgs {
	a = a.u32(uint32(len(p)))
	a = append(a, p...)
	for len(a)%4 != 0 {
		a = append(a, 0)
	}
	return a
}
func (a xdrArgs) str(s string) xdrArgs { return a.opaque([]byte(s)) }

// noSattr is a sattr3 that changes nothing.
func (a xdrArgs) noSattr() xdrArgs { return a.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0) }

func (a xdrArgs) modeSattr(mode uint32) xdrArgs {
	return a.u32(1).u32(mode).u32(0).u32(0).u32(0).u32(0).u32(0)
}

func callRecord(xid, proc uint32, c testCred, args []byte) []byte {
	w := make([]byte, 4)
	for _, v := range []uint32{xid, 0, 2, nfsProgram, 3, proc, c.flavor} {
		w = binary.BigEndian.AppendUint32(w, v)
	}
	w = xdrArgs(w).opaque(c.encode())
	w = binary.BigEndian.AppendUint32(w, 0) // verifier AUTH_NULL
	w = binary.BigEndian.AppendUint32(w, 0)
	w = append(w, args...)
	binary.BigEndian.PutUint32(w, uint32(len(w)-4)|0x80000000)
	return w
}

// serve feeds one record to serveCall as a client at from; nil = go-nfs's.
func serve(t *testing.T, s *Server, from string, rec []byte) []byte {
	t.Helper()
	var out []byte
	ok := s.serveCall(&net.TCPAddr{IP: net.ParseIP(from), Port: 800}, rec, func(w []byte) error {
		out = append([]byte(nil), w...)
		return nil
	})
	if !ok {
		return nil
	}
	if out == nil {
		t.Fatal("answered without a reply")
	}
	return out
}

// answered serves one call from 127.0.0.1 and returns its NFS status and
// the body after it; a call left to go-nfs fails the test.
func answered(t *testing.T, s *Server, xid, proc uint32, c testCred, args xdrArgs) (uint32, []byte) {
	t.Helper()
	rep := serve(t, s, "127.0.0.1", callRecord(xid, proc, c, args))
	if rep == nil {
		t.Fatalf("proc %d left to go-nfs", proc)
	}
	return replyStatus(t, rep, xid)
}

// replyStatus checks the RPC reply header and returns the NFS status and
// the body after it.
func replyStatus(t *testing.T, rep []byte, xid uint32) (uint32, []byte) {
	t.Helper()
	if len(rep) < 4+28 {
		t.Fatalf("short reply %x", rep)
	}
	if binary.BigEndian.Uint32(rep) != uint32(len(rep)-4)|0x80000000 {
		t.Fatalf("record mark %x for %d bytes", rep[:4], len(rep)-4)
	}
	want := xdrArgs(nil).u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0)
	if !bytes.Equal(rep[4:28], want) {
		t.Fatalf("reply header %x, want %x", rep[4:28], []byte(want))
	}
	return binary.BigEndian.Uint32(rep[28:]), rep[32:]
}

func (e *env) handle(t testing.TB, export string, p string) []byte {
	t.Helper()
	x, err := e.srv.exportFor(export)
	if err != nil {
		t.Fatal(err)
	}
	fh := (&handler{s: e.srv}).ToHandle(x, pathElems(p))
	if len(fh) != handleLen {
		t.Fatalf("no handle for %s:%s", export, p)
	}
	return fh
}

func TestCallsCheckAddressPerRequest(t *testing.T) {
	e, _, _ := nfsEnv(t)
	root := e.handle(t, "/nodes/pi1", "/")
	www := e.handle(t, "/volumes/www", "/")
	getattr := func(fh []byte) []byte { return callRecord(7, procGetattr, credRoot, xdrArgs(nil).opaque(fh)) }
	stale := xdrArgs(nil).u32(0x80000000 | 28).u32(7).u32(1).u32(0).u32(0).u32(0).u32(0).u32(nfs3ErrStale)
	for _, tc := range []struct {
		name, from string
		fh         []byte
		ok         bool
	}{
		{"own root", "127.0.0.1", root, true},
		{"another node's root", "127.0.0.2", root, false},
		{"never mounted", "192.0.2.9", root, false},
		{"listed volume", "127.0.0.1", www, true},
		{"volume not listed", "127.0.0.2", www, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := serve(t, e.srv, tc.from, getattr(tc.fh))
			if tc.ok {
				if st, _ := replyStatus(t, rep, 7); st != 0 {
					t.Fatalf("status %d", st)
				}
				return
			}
			if !bytes.Equal(rep, stale) {
				t.Fatalf("reply %x, want %x (NFS3ERR_STALE)", rep, []byte(stale))
			}
		})
	}
	// Every procedure is checked, with its own empty failure body.
	dir := xdrArgs(nil).opaque(root).str("x")
	for proc, args := range map[uint32]xdrArgs{
		procLookup:   dir,
		procRead:     xdrArgs(nil).opaque(root).u64(0).u32(10),
		procCreate:   dir.u32(0).modeSattr(0o644),
		procRemove:   dir,
		procRename:   dir.opaque(root).str("y"),
		procReaddir:  xdrArgs(nil).opaque(root).u64(0).u64(0).u32(4096),
		procCommit:   xdrArgs(nil).opaque(root).u64(0).u32(0),
		procReadlink: xdrArgs(nil).opaque(root),
		procFsstat:   xdrArgs(nil).opaque(root),
		procFsinfo:   xdrArgs(nil).opaque(root),
		procPathconf: xdrArgs(nil).opaque(root),
	} {
		rep := serve(t, e.srv, "127.0.0.2", callRecord(9, proc, credRoot, args))
		st, body := replyStatus(t, rep, 9)
		if st != nfs3ErrStale || len(body) != 4*failBodyWords[proc] || slices.ContainsFunc(body, func(b byte) bool { return b != 0 }) {
			t.Errorf("proc %d from another node: status %d body %x", proc, st, body)
		}
	}
}

func TestCallsCredentials(t *testing.T) {
	e, _, _ := nfsEnv(t)
	root := e.handle(t, "/nodes/pi1", "/")
	denied := func(stat uint32) []byte {
		return xdrArgs(nil).u32(0x80000000 | 20).u32(5).u32(1).u32(1).u32(1).u32(stat)
	}
	for _, tc := range []struct {
		name string
		cred testCred
		want []byte // nil: answered NFS3_OK
	}{
		{"auth_unix", credRoot, nil},
		{"auth_none", credNone, nil},
		{"rpcsec_gss", testCred{flavor: 6, body: []byte{0, 0, 0, 1}}, denied(authTooWeak)},
		{"truncated auth_unix", testCred{flavor: authUnix, body: []byte{0, 0, 0, 0, 0, 0, 0, 4}}, denied(authBadCred)},
		{"17 groups", unixCred(1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), denied(authBadCred)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := serve(t, e.srv, "127.0.0.1", callRecord(5, procGetattr, tc.cred, xdrArgs(nil).opaque(root)))
			if tc.want == nil {
				if st, _ := replyStatus(t, rep, 5); st != 0 {
					t.Fatalf("status %d", st)
				}
				return
			}
			if !bytes.Equal(rep, tc.want) {
				t.Fatalf("reply %x, want %x", rep, tc.want)
			}
		})
	}
	e.srv.cfg.RefuseAuthNone = true
	rep := serve(t, e.srv, "127.0.0.1", callRecord(5, procGetattr, credNone, xdrArgs(nil).opaque(root)))
	if !bytes.Equal(rep, denied(authTooWeak)) {
		t.Fatalf("AUTH_NONE with RefuseAuthNone: %x", rep)
	}
}

func TestSquash(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	s := &Server{}
	node := &export{kind: exportNode}
	vol := func(v Volume) *export {
		x := &export{kind: exportVolume}
		x.vol.Store(&v)
		return x
	}
	rootCred := rpcCred{flavor: authUnix, cred: cred{uid: 0, gid: 0, gids: []uint32{0, 4}}}
	userCred := rpcCred{flavor: authUnix, cred: cred{uid: 1000, gid: 100, gids: []uint32{27}}}
	anon := cred{uid: DefaultAnonID, gid: DefaultAnonID}
	for _, tc := range []struct {
		name string
		x    *export
		rc   rpcCred
		want cred
	}{
		{"node root is root", node, rootCred, rootCred.cred},
		{"node user", node, userCred, userCred.cred},
		{"node auth_none", node, rpcCred{flavor: authNone}, anon},
		{"volume root_squash default", vol(Volume{}), rootCred, cred{uid: DefaultAnonID, gid: DefaultAnonID, gids: []uint32{4}}},
		{"volume root_squash user untouched", vol(Volume{Squash: SquashRoot}), userCred, userCred.cred},
		{"volume no_root_squash", vol(Volume{Squash: SquashNone}), rootCred, rootCred.cred},
		{"volume all_squash", vol(Volume{Squash: SquashAll, AnonUID: u(33), AnonGID: u(34)}), userCred, cred{uid: 33, gid: 34}},
		{"volume anonuid for root", vol(Volume{AnonUID: u(99)}), rootCred, cred{uid: 99, gid: DefaultAnonID, gids: []uint32{4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := s.effective(tc.x, tc.rc)
			if !ok || got.uid != tc.want.uid || got.gid != tc.want.gid || !slices.Equal(got.gids, tc.want.gids) {
				t.Fatalf("got %+v %v, want %+v", got, ok, tc.want)
			}
		})
	}
}

func TestAddrOf(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4(), Port: 1},
	} {
		if got := addrOf(a); got != netip.MustParseAddr("10.0.0.1") {
			t.Errorf("%v: %v", a, got)
		}
	}
}

// ACCESS, READ and LOOKUP as knfsd answers them for a user: /etc/shadow is
// 0640 root:42 in the test image.
func TestAccessReadLookupCheckCaller(t *testing.T) {
	e, _, _ := nfsEnv(t)
	shadow := e.handle(t, "/nodes/pi1", "/etc/shadow")
	access := func(c testCred) uint32 {
		rep := serve(t, e.srv, "127.0.0.1", callRecord(3, procAccess, c, xdrArgs(nil).opaque(shadow).u32(0x3f)))
		st, body := replyStatus(t, rep, 3)
		if st != 0 || len(body) != 4+84+4 {
			t.Fatalf("ACCESS status %d body %d bytes", st, len(body))
		}
		return binary.BigEndian.Uint32(body[88:])
	}
	for _, tc := range []struct {
		name string
		c    testCred
		want uint32
	}{
		{"root", credRoot, access3Read | access3Modify | access3Extend},
		{"other user", credUser, 0},
		{"group member", unixCred(1000, 1000, 42), access3Read},
		{"anonymous", credNone, 0},
	} {
		if got := access(tc.c); got != tc.want {
			t.Errorf("ACCESS as %s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	read := func(c testCred) uint32 {
		st, _ := replyStatus(t, serve(t, e.srv, "127.0.0.1", callRecord(4, procRead, c, xdrArgs(nil).opaque(shadow).u64(0).u32(100))), 4)
		return st
	}
	if st := read(credUser); st != nfs3ErrAcces {
		t.Errorf("READ of /etc/shadow as uid 1000: %d, want NFS3ERR_ACCES", st)
	}
	if st := read(unixCred(1000, 1000, 42)); st != 0 {
		t.Errorf("READ of /etc/shadow as group 42: %d", st)
	}
	// LOOKUP needs search permission on the directory.
	x := e.export("/nodes/pi1")
	x.mu.Lock()
	if err := x.setAttrs(x.t, "/etc", func(host string, _ *unixStat) error { return chmodHost(host, 0o750) }); err != nil {
		t.Fatal(err)
	}
	x.mu.Unlock()
	etc := e.handle(t, "/nodes/pi1", "/etc")
	rep := serve(t, e.srv, "127.0.0.1", callRecord(6, procLookup, credUser, xdrArgs(nil).opaque(etc).str("hostname")))
	st, body := replyStatus(t, rep, 6)
	if st != nfs3ErrAcces || len(body) != 4+84 || binary.BigEndian.Uint32(body) != 1 {
		t.Errorf("LOOKUP in a 0750 dir as uid 1000: status %d body %x", st, body)
	}
	rep = serve(t, e.srv, "127.0.0.1", callRecord(6, procLookup, credRoot, xdrArgs(nil).opaque(etc).str("hostname")))
	if st, _ := replyStatus(t, rep, 6); st != 0 {
		t.Errorf("LOOKUP as root: %d", st)
	}
}

type unixStat = unix.Stat_t

func chmodHost(host string, mode uint32) error { return unix.Chmod(host, mode) }

// A volume's inode numbers are reused as soon as a file is deleted; the
// new object must not get the deleted one's handle (the Linux client
// would take it for the dead inode: pjdfstest's first operation in a fresh
// directory failed with ENOENT), and the old handle must not reach it.
func TestVolumeIdentitySurvivesInodeReuse(t *testing.T) {
	e, _, _ := nfsEnv(t)
	x := e.export("/volumes/www")
	h := &handler{s: e.srv}
	for _, typ := range []string{"dir", "file"} {
		t.Run(typ, func(t *testing.T) {
			mk := func(p string) {
				if typ == "dir" {
					if err := x.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
					return
				}
				f, err := x.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			ino := func(p string) uint64 {
				var st unix.Stat_t
				if err := unix.Lstat(x.imageRoot+p, &st); err != nil {
					t.Fatal(err)
				}
				return st.Ino
			}
			mk("/old-" + typ)
			oldIno := ino("/old-" + typ)
			oldFH := h.ToHandle(x, []string{"old-" + typ})
			if err := x.Remove("/old-" + typ); err != nil {
				t.Fatal(err)
			}
			reused := ""
			for i := 0; i < 50 && reused == ""; i++ {
				p := "/new-" + typ + strconv.Itoa(i)
				mk(p)
				if ino(p) == oldIno {
					reused = p
				}
			}
			if reused == "" {
				t.Skip("the host file system did not reuse the inode number")
			}
			newFH := h.ToHandle(x, pathElems(reused))
			if bytes.Equal(oldFH, newFH) {
				t.Fatalf("%s got the deleted object's handle", reused)
			}
			if _, _, err := h.FromHandle(oldFH); err == nil {
				t.Fatal("the deleted object's handle resolves")
			}
			if _, p, err := h.FromHandle(newFH); err != nil || "/"+p[0] != reused {
				t.Fatalf("new handle: %v %v", p, err)
			}
		})
	}
}

// mtimeOnly rewrites the atime and ctime of each fattr3 in a reply body
// (status first) to its mtime, as go-nfs sends them, drops the type bits
// go-nfs leaves in the mode and zeroes the fsid (go-nfs sends 0): the
// byte-for-byte comparisons with go-nfs's replies ignore what nfsd sends
// right.
func mtimeOnly(b []byte, proc uint32) []byte {
	b = append([]byte(nil), b...)
	if len(b) < 4 || binary.BigEndian.Uint32(b) != 0 {
		return b
	}
	var offs []int
	switch proc {
	case procGetattr:
		offs = []int{4}
	case procAccess, procRead:
		offs = []int{8}
	case procLookup:
		offs = []int{4 + 4 + handleLen + 4, 4 + 4 + handleLen + 4 + 84 + 4}
	}
	for _, o := range offs {
		if o+84 <= len(b) {
			binary.BigEndian.PutUint32(b[o+4:], binary.BigEndian.Uint32(b[o+4:])&0o7777)
			clear(b[o+44 : o+52])
			copy(b[o+60:], b[o+68:o+76])
			copy(b[o+76:], b[o+68:o+76])
		}
	}
	return b
}

// TestStatusOf: errno → nfsstat3 as knfsd's nfserrno maps them (and
// pictl's own errors).
func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want uint32
	}{
		{nil, nfs3OK},
		{unix.EPERM, nfs3ErrPerm},
		{unix.ENOENT, nfs3ErrNoEnt},
		{&os.PathError{Op: "lstat", Path: "/x", Err: unix.ENOENT}, nfs3ErrNoEnt},
		{os.ErrNotExist, nfs3ErrNoEnt},
		{unix.EACCES, nfs3ErrAcces},
		{unix.EEXIST, nfs3ErrExist},
		{unix.EXDEV, nfs3ErrXDev},
		{unix.ENOTDIR, nfs3ErrNotDir},
		{unix.EISDIR, nfs3ErrIsDir},
		{unix.EINVAL, nfs3ErrInval},
		{unix.EFBIG, nfs3ErrFBig},
		{unix.E2BIG, nfs3ErrFBig},
		{unix.ENOSPC, nfs3ErrNoSpc},
		{unix.EROFS, nfs3ErrROFS},
		{unix.EMLINK, nfs3ErrMLink},
		{unix.ENAMETOOLONG, nfs3ErrNameTooLong},
		{unix.ENOTEMPTY, nfs3ErrNotEmpty},
		{unix.EDQUOT, nfs3ErrDQuot},
		{unix.ESTALE, nfs3ErrStale},
		{unix.EBADF, nfs3ErrStale},
		{errStale, nfs3ErrStale},
		{unix.ENXIO, nfs3ErrNXIO},
		{unix.ENODEV, nfs3ErrNoDev},
		{unix.EOPNOTSUPP, nfs3ErrNotSupp},
		{unix.EAGAIN, nfs3ErrJukebox},
		{unix.ENOMEM, nfs3ErrJukebox},
		{unix.ENFILE, nfs3ErrServerFault},
		{unix.EIO, nfs3ErrIO},
		{errors.New("anything else"), nfs3ErrIO},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestQuickCall(t *testing.T) {
	fh := make([]byte, handleLen)
	write := func(off uint64, how uint32) []byte {
		return callRecord(1, procWrite, credRoot, xdrArgs(nil).opaque(fh).u64(off).u32(4).u32(how).opaque([]byte("data")))
	}
	create := callRecord(1, procCreate, credRoot, xdrArgs(nil).opaque(fh).str("f").u32(0).noSattr())
	tests := []struct {
		name string
		cfg  Config
		rec  []byte
		want bool
	}{
		{"read", Config{}, callRecord(1, procRead, credRoot, xdrArgs(nil).opaque(fh).u64(0).u32(4096)), true},
		{"readdirplus", Config{}, callRecord(1, procReaddirplus, credRoot, xdrArgs(nil).opaque(fh).u64(0).u64(0).u32(4096).u32(65536)), true},
		{"commit fsyncs", Config{}, callRecord(1, procCommit, credRoot, xdrArgs(nil).opaque(fh).u64(0).u32(0)), false},
		{"commit without sync", Config{NoSyncWrites: true}, callRecord(1, procCommit, credRoot, xdrArgs(nil).opaque(fh).u64(0).u32(0)), true},
		{"unstable write past the start", Config{}, write(4096, writeUnstable), true},
		{"unstable write at 0 may be the whole file", Config{}, write(0, writeUnstable), false},
		{"file_sync write", Config{}, write(4096, writeFileSync), false},
		{"write without sync", Config{NoSyncWrites: true}, write(0, writeFileSync), true},
		{"create, metadata flushed later", Config{}, create, true},
		{"create under SyncMetadata", Config{SyncMetadata: true}, create, false},
		{"truncated write", Config{}, callRecord(1, procWrite, credRoot, xdrArgs(nil).opaque(fh)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: tc.cfg}
			if got := s.quickCall(tc.rec); got != tc.want {
				t.Fatalf("quickCall = %v, want %v", got, tc.want)
			}
		})
	}
}
