package nfsd

import (
	"context"
	"net"
	"os"
	"testing"

	billy "github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs/helpers"
	"github.com/willscott/go-nfs/helpers/memfs"
)

// Tests named TestDefect* pin down what go-nfs v0.0.4's protocol layer
// still gets wrong with nfsd's handler (GO_NFS_DEFECTS.md). They assert
// the defective behaviour, so they pass today and fail — asking for the
// list to be updated — the day go-nfs fixes one.

func defectEnv(t *testing.T) (*nfsc.Target, *rpc.Client) {
	_, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	return v, dialRPC(t, addr)
}

func lookupOK(t *testing.T, v *nfsc.Target, p string) []byte {
	t.Helper()
	_, fh, err := v.Lookup(p)
	if err != nil {
		t.Fatalf("lookup %s: %v", p, err)
	}
	return fh
}

// LINK3args is (file, link dir, link name); go-nfs decodes a diropargs3
// first, i.e. takes the file handle as the directory and the directory
// handle as the name. `ln` on a node fails.
func TestDefectLinkArgumentOrder(t *testing.T) {
	v, c := defectEnv(t)
	file := lookupOK(t, v, "/etc/hostname")
	dir := lookupOK(t, v, "/tmp")
	st, _ := call(t, c, &struct {
		rpc.Header
		File []byte
		Dir  []byte
		Name string
	}{header(15, rootAuth), file, dir, "hostname.link"})
	if st == nfsc.NFS3Ok {
		t.Fatal("LINK works now: go-nfs fixed its argument order, update GO_NFS_DEFECTS.md and the kernel test's hardlink check")
	}
	if _, _, err := v.Lookup("/tmp/hostname.link"); err == nil {
		t.Fatal("link created")
	}
	t.Logf("LINK status %d (NFS3ERR_INVAL=22 expected)", st)
}

// MKNOD of a character device: go-nfs's NF3CHR case is empty, so it
// answers NFS3_OK, creates nothing, and hands out a handle for nothing.
func TestDefectMknodCharCreatesNothing(t *testing.T) {
	v, c := defectEnv(t)
	dir := lookupOK(t, v, "/tmp")
	st, _ := call(t, c, &struct {
		rpc.Header
		Dir  []byte
		Name string
		Type uint32
		Attr nfsc.Sattr3
		Spec [2]uint32
	}{header(11, rootAuth), dir, "null", 4 /* NF3CHR */, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o666}}, [2]uint32{1, 3}})
	if st != nfsc.NFS3Ok {
		t.Fatalf("MKNOD CHR status %d: behaviour changed, update GO_NFS_DEFECTS.md", st)
	}
	if _, _, err := v.Lookup("/tmp/null"); err == nil {
		t.Fatal("character device created: go-nfs fixed NF3CHR, update GO_NFS_DEFECTS.md")
	}
	// Block devices, FIFOs and sockets do work through nfsd's UnixChange.
	st, _ = call(t, c, &struct {
		rpc.Header
		Dir  []byte
		Name string
		Type uint32
		Attr nfsc.Sattr3
		Spec [2]uint32
	}{header(11, rootAuth), dir, "blk", 3 /* NF3BLK */, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}}, [2]uint32{7, 2}})
	fi, _, err := v.Lookup("/tmp/blk")
	if st != nfsc.NFS3Ok || err != nil || fi.(*nfsc.Fattr).Type != 3 || fi.(*nfsc.Fattr).SpecData != [2]uint32{7, 2} {
		t.Fatalf("block device: status %d err %v attr %+v", st, err, fi)
	}
}

// SETATTR masks the mode with 0777: chmod u+s / g+s / +t cannot be set
// (nfsd keeps the bits a file has, so chmod cannot clear them either).
func TestDefectSetattrDropsSpecialBits(t *testing.T) {
	v, c := defectEnv(t)
	fh := lookupOK(t, v, "/usr/bin/busybox")
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o4755}}); err != nil {
		t.Fatal(err)
	}
	a, _ := getattr(t, c, fh)
	if a.FileMode&0o7777 != 0o755 {
		t.Fatalf("mode %o: go-nfs passes special bits now, update GO_NFS_DEFECTS.md and export.Chmod", a.FileMode&0o7777)
	}
}

// Files a user creates belong to root: go-nfs does not hand the RPC
// credentials to the handler.
func TestDefectCreatorNotOwner(t *testing.T) {
	v, c := defectEnv(t)
	dir := lookupOK(t, v, "/tmp")
	user := rpc.NewAuthUnix("node", 1000, 1000).Auth()
	st, _ := call(t, c, &struct {
		rpc.Header
		Dir  []byte
		Name string
		How  uint32
		Attr nfsc.Sattr3
	}{header(nfsc.NFSProc3Create, user), dir, "users-file", 0, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o644}}})
	if st != nfsc.NFS3Ok {
		t.Fatalf("create: %d", st)
	}
	fi, _, err := v.Lookup("/tmp/users-file")
	if err != nil {
		t.Fatal(err)
	}
	if fi.(*nfsc.Fattr).UID != 0 {
		t.Fatalf("owner %d: go-nfs passes credentials now, update GO_NFS_DEFECTS.md", fi.(*nfsc.Fattr).UID)
	}
}

// Every attribute reply carries mtime as atime and ctime, so ctime does not
// move on chmod/chown (clients compare ctime to see attribute changes).
func TestDefectTimesAreMtime(t *testing.T) {
	v, c := defectEnv(t)
	fh := lookupOK(t, v, "/etc/hostname")
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}}); err != nil {
		t.Fatal(err)
	}
	a, _ := getattr(t, c, fh)
	if a.Ctime != a.Mtime || a.Atime != a.Mtime {
		t.Fatalf("atime %v mtime %v ctime %v: go-nfs sends real times now, update GO_NFS_DEFECTS.md", a.Atime, a.Mtime, a.Ctime)
	}
}

// CREATE in EXCLUSIVE mode is NOTSUPP. The Linux client falls back to
// GUARDED, so O_EXCL still works on one node, without the verifier that
// makes retransmissions safe.
func TestDefectExclusiveCreate(t *testing.T) {
	v, c := defectEnv(t)
	dir := lookupOK(t, v, "/tmp")
	st, _ := call(t, c, &struct {
		rpc.Header
		Dir  []byte
		Name string
		How  uint32
		Verf [8]byte
	}{header(nfsc.NFSProc3Create, rootAuth), dir, "excl", 2, [8]byte{1, 2, 3}})
	if st != nfsc.NFS3ErrNotSupp {
		t.Fatalf("EXCLUSIVE create status %d: behaviour changed, update GO_NFS_DEFECTS.md", st)
	}
}

// MOUNT has no EXPORT (or DUMP) procedure: `showmount -e` fails.
func TestDefectNoMountExport(t *testing.T) {
	_, addr, _ := nfsEnv(t)
	c := dialRPC(t, addr)
	_, err := c.Call(&struct{ rpc.Header }{rpc.Header{Rpcvers: 2, Prog: nfsc.MountProg, Vers: nfsc.MountVers, Proc: nfsc.MountProc3Export, Cred: rpc.AuthNull, Verf: rpc.AuthNull}})
	if err == nil {
		t.Fatal("MOUNT EXPORT answered: update GO_NFS_DEFECTS.md")
	}
}

// Every export reports fsid 0 (go-nfs never fills it in).
func TestDefectFSIDZero(t *testing.T) {
	_, addr, _ := nfsEnv(t)
	c := dialRPC(t, addr)
	a1, _ := getattr(t, c, rootFH(t, mustMount(t, addr, "/nodes/pi1")))
	a2, _ := getattr(t, c, rootFH(t, mustMount(t, addr, "/volumes/www")))
	if a1.FSID != 0 || a2.FSID != 0 {
		t.Fatalf("fsid %d %d: update GO_NFS_DEFECTS.md", a1.FSID, a2.FSID)
	}
}

// go-nfs reads opaque arguments (handles) without skipping XDR padding:
// after a handle whose length is not a multiple of 4 every following
// argument is shifted. Shown on go-nfs's own memfs with handles one byte
// longer than usual; nfsd's handles are 32 bytes for this reason.
func TestDefectOpaquePadding(t *testing.T) {
	fs := memfs.New()
	f, _ := fs.Create("/file")
	f.Close()
	base := helpers.NewCachingHandler(helpers.NewNullAuthHandler(fs), 1024)
	h := &oddHandles{Handler: base}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = (&nfs.Server{Handler: h, Context: ctx}).Serve(ln) }()
	defer ln.Close()
	v := mustMount(t, ln.Addr().String(), "/")
	_, fh, err := v.Lookup("/file")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}}); err != nil {
		t.Logf("setattr: %v", err)
	}
	fi, _ := fs.Stat("/file")
	if fi.Mode().Perm() == 0o600 {
		t.Fatal("SETATTR after a 17-byte handle applied: go-nfs skips XDR padding now, update GO_NFS_DEFECTS.md")
	}
}

// oddHandles appends one byte to every handle of a go-nfs helper handler.
type oddHandles struct{ nfs.Handler }

func (o *oddHandles) ToHandle(fs billy.Filesystem, p []string) []byte {
	return append(o.Handler.ToHandle(fs, p), 0)
}

func (o *oddHandles) FromHandle(fh []byte) (billy.Filesystem, []string, error) {
	if len(fh) == 0 {
		return nil, nil, os.ErrInvalid
	}
	return o.Handler.FromHandle(fh[:len(fh)-1])
}

// Fixed in nfsd, shown here: an UNCHECKED CREATE of an existing file keeps
// its data (go-nfs calls billy's truncating Create for it).
func TestUncheckedCreateKeepsData(t *testing.T) {
	v, _ := defectEnv(t)
	if _, err := v.Create("/etc/hostname", 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readTarget(t, v, "/etc/hostname"); got != "image\n" {
		t.Fatalf("UNCHECKED CREATE truncated: %q", got)
	}
}
