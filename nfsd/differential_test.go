package nfsd

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The differential test runs one script of operations, each as some user,
// twice: against a local directory with the real kernel (each operation in
// a child process running with that user's uid, gid and groups, umask 0),
// and through nfsd over TCP (AUTH_UNIX with the same identity, on a
// volume with no_root_squash and on a node root whose tree is the image).
// Every step must give the same errno, and the same owner, mode, type and
// link count afterwards. Where a kernel NFS client would ask ACCESS before
// acting (open for reading, writing, executing), the NFS side asks ACCESS
// as the client does.

type diffUser struct {
	Name string
	UID  uint32
	GID  uint32
	Gids []uint32
}

var (
	diffRoot  = diffUser{"root", 0, 0, nil}
	diffU1000 = diffUser{"u1000", 1000, 1000, nil}
	diffU1001 = diffUser{"u1001", 1001, 1001, []uint32{50}}
)

type diffOp struct {
	Op   string // create, excl, mkdir, unlink, rmdir, rename, link, symlink, fifo, chr, chmod, chown, utimes, touch, read, write, exec, append
	A, B string
	Mode uint32
	UID  int
	GID  int
}

type diffStep struct {
	who diffUser
	op  diffOp
}

// diffTree is the starting tree (also the image of the node-root case).
var diffTree = []imgFile{
	{path: "pub", mode: unix.S_IFDIR | 0o755},
	{path: "pub/readme", mode: unix.S_IFREG | 0o644, content: "readme\n"},
	{path: "pub/secret", mode: unix.S_IFREG | 0o600, content: "secret\n"},
	{path: "pub/tool", mode: unix.S_IFREG | 0o755, content: "tool\n"},
	{path: "tmp", mode: unix.S_IFDIR | 0o1777},
	{path: "tmp/rootfile", mode: unix.S_IFREG | 0o644, content: "r\n"},
	{path: "tmp/userfile", mode: unix.S_IFREG | 0o644, content: "u\n", uid: 1000, gid: 1000},
	{path: "home", mode: unix.S_IFDIR | 0o755},
	{path: "home/u", mode: unix.S_IFDIR | 0o755, uid: 1000, gid: 1000},
	{path: "home/u/f", mode: unix.S_IFREG | 0o644, content: "f\n", uid: 1000, gid: 1000},
	{path: "home/u/suid", mode: unix.S_IFREG | 0o4755, content: "s\n", uid: 1000, gid: 1000},
	{path: "home/u/s2", mode: unix.S_IFREG | 0o6775, content: "s2\n", uid: 1000, gid: 1000},
	{path: "grp", mode: unix.S_IFDIR | 0o2775, gid: 50},
	{path: "priv", mode: unix.S_IFDIR | 0o700},
	{path: "priv/inner", mode: unix.S_IFREG | 0o644, content: "i\n"},
}

func diffScript() []diffStep {
	long := strings.Repeat("n", 256)
	s := []diffStep{
		{diffU1000, diffOp{Op: "create", A: "pub/x", Mode: 0o644}},
		{diffU1000, diffOp{Op: "mkdir", A: "pub/d", Mode: 0o755}},
		{diffU1000, diffOp{Op: "unlink", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "create", A: "tmp/a", Mode: 0o644}},
		{diffU1001, diffOp{Op: "unlink", A: "tmp/a"}},
		{diffU1001, diffOp{Op: "rename", A: "tmp/a", B: "tmp/b"}},
		{diffU1000, diffOp{Op: "rename", A: "tmp/a", B: "tmp/b"}},
		{diffU1001, diffOp{Op: "rename", A: "tmp/rootfile", B: "tmp/mine"}},
		{diffRoot, diffOp{Op: "unlink", A: "tmp/userfile"}},
		{diffU1000, diffOp{Op: "chmod", A: "pub/readme", Mode: 0o777}},
		{diffU1000, diffOp{Op: "chown", A: "home/u/f", UID: 1001, GID: -1}},
		{diffU1000, diffOp{Op: "chown", A: "home/u/f", UID: -1, GID: 50}},
		{diffU1001, diffOp{Op: "create", A: "grp/g", Mode: 0o2755}},
		{diffU1001, diffOp{Op: "mkdir", A: "grp/sd", Mode: 0o2775}},
		{diffU1001, diffOp{Op: "chown", A: "grp/g", UID: -1, GID: 1001}},
		{diffU1000, diffOp{Op: "chmod", A: "home/u/f", Mode: 0o2755}},
		{diffU1000, diffOp{Op: "chmod", A: "home/u/f", Mode: 0o1644}},
		{diffRoot, diffOp{Op: "chown", A: "home/u/suid", UID: 1001, GID: 1001}},
		{diffU1000, diffOp{Op: "touch", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "utimes", A: "tmp/b"}},
		{diffU1001, diffOp{Op: "touch", A: "tmp/b"}},
		{diffU1001, diffOp{Op: "utimes", A: "tmp/b"}},
		{diffU1000, diffOp{Op: "symlink", A: "home/u/l", B: "target"}},
		{diffU1000, diffOp{Op: "fifo", A: "home/u/p", Mode: 0o640}},
		{diffU1000, diffOp{Op: "chr", A: "home/u/c", Mode: 0o600}},
		{diffRoot, diffOp{Op: "chr", A: "home/u/c", Mode: 0o600}},
		{diffU1000, diffOp{Op: "link", A: "home/u/f", B: "home/u/f2"}},
		{diffU1000, diffOp{Op: "link", A: "home/u/f", B: "pub/f3"}},
		{diffU1000, diffOp{Op: "link", A: "home/u", B: "home/u/self"}},
		{diffU1000, diffOp{Op: "rmdir", A: "pub"}},
		{diffU1000, diffOp{Op: "mkdir", A: "home/u/dd", Mode: 0o755}},
		{diffU1000, diffOp{Op: "create", A: "home/u/dd/x", Mode: 0o600}},
		{diffU1000, diffOp{Op: "rmdir", A: "home/u/dd"}},
		{diffU1000, diffOp{Op: "unlink", A: "home/u/dd"}},
		{diffU1000, diffOp{Op: "rmdir", A: "home/u/f"}},
		{diffU1000, diffOp{Op: "rename", A: "home/u/dd", B: "pub/dd"}},
		{diffU1000, diffOp{Op: "rename", A: "home/u/dd", B: "home/u/f2"}},
		{diffU1000, diffOp{Op: "rename", A: "home/u/f2", B: "home/u/dd"}},
		{diffU1000, diffOp{Op: "read", A: "pub/secret"}},
		{diffU1000, diffOp{Op: "read", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "write", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "exec", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "exec", A: "pub/tool"}},
		{diffRoot, diffOp{Op: "exec", A: "pub/readme"}},
		{diffU1001, diffOp{Op: "read", A: "priv/inner"}},
		{diffU1000, diffOp{Op: "create", A: "home/u/" + long, Mode: 0o644}},
		{diffU1000, diffOp{Op: "excl", A: "home/u/f", Mode: 0o644}},
		{diffU1000, diffOp{Op: "append", A: "home/u/s2"}},
		{diffU1001, diffOp{Op: "append", A: "home/u/s2"}},
		{diffRoot, diffOp{Op: "chmod", A: "home/u/s2", Mode: 0o4755}},
		{diffRoot, diffOp{Op: "append", A: "home/u/s2"}},
		{diffU1001, diffOp{Op: "create", A: "priv/no", Mode: 0o644}},
		// Which error comes first, as the VFS orders its checks.
		{diffU1000, diffOp{Op: "unlink", A: "pub/nothing"}},
		{diffU1000, diffOp{Op: "rmdir", A: "pub/readme"}},
		{diffU1000, diffOp{Op: "excl", A: "pub/readme", Mode: 0o644}},
		{diffU1000, diffOp{Op: "mkdir", A: "pub/secret", Mode: 0o755}},
		{diffU1001, diffOp{Op: "rename", A: "pub/nothing", B: "tmp/x"}},
		{diffU1001, diffOp{Op: "rename", A: "tmp/b", B: "pub/x"}},
		{diffU1000, diffOp{Op: "link", A: "home/u/f", B: "pub/readme"}},
		{diffU1000, diffOp{Op: "link", A: "pub/readme", B: "pub/again"}},
		{diffU1001, diffOp{Op: "unlink", A: "priv/inner"}},
		{diffU1000, diffOp{Op: "rename", A: "home/u/l", B: "home/u/p"}},
		{diffU1000, diffOp{Op: "mkdir", A: "home/u/e", Mode: 0o755}},
		{diffU1000, diffOp{Op: "rename", A: "home/u/e", B: "home/u"}},
		{diffRoot, diffOp{Op: "rename", A: "home/u/e", B: "home/u/e/sub"}},
	}
	return s
}

// TestDifferentialHelper is the child process of the local side.
func TestDifferentialHelper(t *testing.T) {
	spec := os.Getenv("PICTL_NFSD_DIFF_OP")
	if spec == "" {
		t.Skip("helper process of TestDifferentialAgainstLocal")
	}
	var op diffOp
	if err := json.Unmarshal([]byte(spec), &op); err != nil {
		os.Exit(3)
	}
	unix.Umask(0)
	err := localOp(op)
	var errno unix.Errno
	if err != nil && !errors.As(err, &errno) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	fmt.Print(int(errno))
	os.Exit(0)
}

func localOp(op diffOp) error {
	switch op.Op {
	case "create", "excl":
		flags := unix.O_CREAT | unix.O_WRONLY
		if op.Op == "excl" {
			flags |= unix.O_EXCL
		}
		fd, err := unix.Open(op.A, flags, op.Mode)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "mkdir":
		return unix.Mkdir(op.A, op.Mode)
	case "unlink":
		return unix.Unlink(op.A)
	case "rmdir":
		return unix.Rmdir(op.A)
	case "rename":
		return unix.Rename(op.A, op.B)
	case "link":
		return unix.Link(op.A, op.B)
	case "symlink":
		return unix.Symlink(op.B, op.A)
	case "fifo":
		return unix.Mknod(op.A, unix.S_IFIFO|op.Mode, 0)
	case "chr":
		return unix.Mknod(op.A, unix.S_IFCHR|op.Mode, int(unix.Mkdev(1, 3)))
	case "chmod":
		return unix.Chmod(op.A, op.Mode)
	case "chown":
		return unix.Lchown(op.A, op.UID, op.GID)
	case "touch":
		return unix.UtimesNanoAt(unix.AT_FDCWD, op.A, nil, 0)
	case "utimes":
		ts := []unix.Timespec{{Sec: 1000}, {Sec: 2000}}
		return unix.UtimesNanoAt(unix.AT_FDCWD, op.A, ts, 0)
	case "read", "write", "exec":
		mode := map[string]uint32{"read": unix.R_OK, "write": unix.W_OK, "exec": unix.X_OK}[op.Op]
		return unix.Faccessat(unix.AT_FDCWD, op.A, mode, unix.AT_EACCESS)
	case "append":
		fd, err := unix.Open(op.A, unix.O_WRONLY|unix.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte("more\n"))
		return err
	}
	return fmt.Errorf("unknown op %q", op.Op)
}

func runLocal(t *testing.T, bin, root string, who diffUser, op diffOp) unix.Errno {
	t.Helper()
	spec, _ := json.Marshal(op)
	cmd := exec.Command(bin, "-test.run=^TestDifferentialHelper$")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PICTL_NFSD_DIFF_OP="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: who.UID, Gid: who.GID, Groups: who.Gids}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("local %s as %s: %v %s", op.Op, who.Name, err, out)
	}
	var n int
	if _, err := fmt.Sscan(string(out), &n); err != nil {
		t.Fatalf("local %s: output %q", op.Op, out)
	}
	return unix.Errno(n)
}

// rawNFS is a synchronous NFSv3 client speaking raw records.
type rawNFS struct {
	t   *testing.T
	c   net.Conn
	br  *bufio.Reader
	xid uint32
}

func dialRaw(t *testing.T, addr string) *rawNFS {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawNFS{t: t, c: c, br: bufio.NewReader(c)}
}

// call sends one call and returns status and body.
func (r *rawNFS) call(proc uint32, who diffUser, args []byte) (uint32, []byte) {
	r.t.Helper()
	r.xid++
	rec := callRecord(r.xid, proc, unixCred(who.UID, who.GID, who.Gids...), args)
	_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write(rec); err != nil {
		r.t.Fatal(err)
	}
	rep, err := readRPCRecord(r.br)
	if err != nil {
		r.t.Fatal(err)
	}
	return replyStatus(r.t, rep, r.xid)
}

// nfsErrno is the errno the Linux client turns a status into.
func nfsErrno(st uint32) unix.Errno {
	switch st {
	case 0:
		return 0
	case nfs3ErrNameTooLong:
		return unix.ENAMETOOLONG
	case nfs3ErrNotEmpty:
		return unix.ENOTEMPTY
	case nfs3ErrDQuot:
		return unix.EDQUOT
	case nfs3ErrStale:
		return unix.ESTALE
	}
	if st < 100 {
		return unix.Errno(st)
	}
	return unix.EIO
}

type nfsSide struct {
	r    *rawNFS
	root []byte
}

// walk looks p up component by component as who.
func (n *nfsSide) walk(who diffUser, p string) ([]byte, uint32) {
	fh := n.root
	if p == "" || p == "." {
		return fh, 0
	}
	for _, name := range strings.Split(p, "/") {
		st, body := n.r.call(procLookup, who, xdrArgs(nil).opaque(fh).str(name))
		if st != 0 {
			return nil, st
		}
		fh = body[4 : 4+handleLen]
	}
	return fh, 0
}

func (n *nfsSide) dirOf(who diffUser, p string) ([]byte, string, uint32) {
	dir, name := filepath.Split(p)
	fh, st := n.walk(who, strings.TrimSuffix(dir, "/"))
	return fh, name, st
}

func (n *nfsSide) op(who diffUser, op diffOp) uint32 {
	switch op.Op {
	case "create", "excl", "mkdir", "unlink", "rmdir", "symlink", "fifo", "chr":
		dir, name, st := n.dirOf(who, op.A)
		if st != 0 {
			return st
		}
		a := xdrArgs(nil).opaque(dir).str(name)
		switch op.Op {
		case "create":
			st, _ = n.r.call(procCreate, who, a.u32(createUnchecked).modeSattr(op.Mode))
		case "excl":
			st, _ = n.r.call(procCreate, who, a.u32(createGuarded).modeSattr(op.Mode))
		case "mkdir":
			st, _ = n.r.call(procMkdir, who, a.modeSattr(op.Mode))
		case "unlink":
			st, _ = n.r.call(procRemove, who, a)
		case "rmdir":
			st, _ = n.r.call(procRmdir, who, a)
		case "symlink":
			st, _ = n.r.call(procSymlink, who, a.noSattr().str(op.B))
		case "fifo":
			st, _ = n.r.call(procMknod, who, a.u32(nf3Fifo).modeSattr(op.Mode))
		case "chr":
			st, _ = n.r.call(procMknod, who, a.u32(nf3Chr).modeSattr(op.Mode).u32(1).u32(3))
		}
		return st
	case "rename", "link":
		fromDir, fromName, st := n.dirOf(who, op.A)
		if st != 0 {
			return st
		}
		toDir, toName, st := n.dirOf(who, op.B)
		if st != 0 {
			return st
		}
		if op.Op == "rename" {
			st, _ = n.r.call(procRename, who, xdrArgs(nil).opaque(fromDir).str(fromName).opaque(toDir).str(toName))
			return st
		}
		fh, st := n.walk(who, op.A)
		if st != 0 {
			return st
		}
		st, _ = n.r.call(procLink, who, xdrArgs(nil).opaque(fh).opaque(toDir).str(toName))
		return st
	}
	fh, st := n.walk(who, op.A)
	if st != 0 {
		return st
	}
	setattr := func(a xdrArgs) uint32 {
		st, _ := n.r.call(procSetattr, who, append(xdrArgs(nil).opaque(fh), a.u32(0)...))
		return st
	}
	access := func(bit uint32) uint32 {
		st, body := n.r.call(procAccess, who, xdrArgs(nil).opaque(fh).u32(bit))
		if st != 0 {
			return st
		}
		if binary.BigEndian.Uint32(body[4+84:])&bit == 0 {
			return nfs3ErrAcces
		}
		return 0
	}
	switch op.Op {
	case "chmod":
		return setattr(xdrArgs(nil).modeSattr(op.Mode))
	case "chown":
		a := xdrArgs(nil).u32(0)
		for _, id := range []int{op.UID, op.GID} {
			if id < 0 {
				a = a.u32(0)
			} else {
				a = a.u32(1).u32(uint32(id))
			}
		}
		return setattr(a.u32(0).u32(0).u32(0))
	case "touch":
		return setattr(xdrArgs(nil).u32(0).u32(0).u32(0).u32(0).u32(setToServerTime).u32(setToServerTime))
	case "utimes":
		return setattr(xdrArgs(nil).u32(0).u32(0).u32(0).u32(0).u32(setToClientTime).u32(1000).u32(0).u32(setToClientTime).u32(2000).u32(0))
	case "read":
		return access(access3Read)
	case "write":
		return access(access3Modify)
	case "exec":
		return access(access3Execute)
	case "append":
		if st := access(access3Modify); st != 0 {
			return st
		}
		_, body := n.r.call(procGetattr, who, xdrArgs(nil).opaque(fh))
		size := binary.BigEndian.Uint64(body[20:])
		st, _ := n.r.call(procWrite, who, xdrArgs(nil).opaque(fh).u64(size).u32(5).u32(2).str("more\n"))
		return st
	}
	n.r.t.Fatalf("unknown op %s", op.Op)
	return 0
}

// attrs: type, mode, uid, gid, nlink of p as the NFS side sees it.
func (n *nfsSide) attrs(p string) (string, bool) {
	fh, st := n.walk(diffRoot, p)
	if st != 0 {
		return "", false
	}
	_, body := n.r.call(procGetattr, diffRoot, xdrArgs(nil).opaque(fh))
	u := func(i int) uint32 { return binary.BigEndian.Uint32(body[i:]) }
	return fmt.Sprintf("type %d mode %o uid %d gid %d nlink %d size %d", u(0), u(4), u(12), u(16), u(8), binary.BigEndian.Uint64(body[20:])), true
}

func localAttrs(root, p string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
		return "", false
	}
	typ := map[uint32]uint32{unix.S_IFREG: 1, unix.S_IFDIR: 2, unix.S_IFBLK: 3, unix.S_IFCHR: 4, unix.S_IFLNK: 5, unix.S_IFSOCK: 6, unix.S_IFIFO: 7}[st.Mode&unix.S_IFMT]
	return fmt.Sprintf("type %d mode %o uid %d gid %d nlink %d size %d", typ, st.Mode&0o7777, st.Uid, st.Gid, st.Nlink, st.Size), true
}

func TestDifferentialAgainstLocal(t *testing.T) {
	for _, kind := range []string{"volume", "node root"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			// Users other than root must reach the local tree: not
			// below t.TempDir's 0700 directories.
			base, err := os.MkdirTemp("", "nfsd-diff-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			// The test binary too (it runs the local operations).
			bin := filepath.Join(base, "nfsd.test")
			self, err := os.ReadFile(os.Args[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, self, 0o755); err != nil {
				t.Fatal(err)
			}
			local := filepath.Join(base, "local")
			buildTree(t, local, diffTree)
			if err := os.Chmod(local, 0o755); err != nil {
				t.Fatal(err)
			}
			served := filepath.Join(t.TempDir(), "served")
			buildTree(t, served, diffTree)
			if err := os.Chmod(served, 0o755); err != nil {
				t.Fatal(err)
			}
			export := "/volumes/diff"
			if kind == "volume" {
				e.nodes.set(Node{Name: "pi1", ImageRoot: newImage(t), Volumes: []string{"diff"}}, "127.0.0.1")
				e.nodes.setVolume(Volume{Name: "diff", Path: served, Squash: SquashNone})
			} else {
				e.nodes.set(Node{Name: "pi1", ImageRoot: served}, "127.0.0.1")
				export = "/nodes/pi1"
			}
			addr := e.serve()
			n := &nfsSide{r: dialRaw(t, addr), root: e.handle(t, export, "/")}
			for i, step := range diffScript() {
				want := runLocal(t, bin, local, step.who, step.op)
				got := nfsErrno(n.op(step.who, step.op))
				desc := fmt.Sprintf("step %d: %s %s %s %s", i, step.who.Name, step.op.Op, step.op.A, step.op.B)
				if got != want {
					t.Errorf("%s: nfsd %v (%d), local %v (%d)", desc, got, int(got), want, int(want))
				}
				for _, p := range []string{step.op.A, step.op.B} {
					if p == "" || (step.op.Op == "symlink" && p == step.op.B) {
						continue
					}
					la, lok := localAttrs(local, p)
					na, nok := n.attrs(p)
					if lok != nok || (lok && !sameAttrs(la, na)) {
						t.Errorf("%s: %s: nfsd %q, local %q", desc, p, na, la)
					}
				}
			}
		})
	}
}

// sameAttrs compares attribute summaries; directories' sizes and link
// counts are the host file system's business (merged directories report
// one link), so they are left out for directories.
func sameAttrs(local, served string) bool {
	if strings.HasPrefix(local, "type 2 ") {
		cut := func(s string) string { i := strings.Index(s, " nlink"); return s[:i] }
		return cut(local) == cut(served)
	}
	return local == served
}
