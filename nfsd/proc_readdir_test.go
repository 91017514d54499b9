package nfsd

import (
	"os"
	"slices"
	"testing"
)

type dirEnt struct {
	id     uint64
	name   string
	cookie uint64
	fh     []byte
}

// parseReaddir decodes a READDIR(PLUS) reply body (status first).
func parseReaddir(t *testing.T, body []byte, plus bool) (verf uint64, ents []dirEnt, eof bool) {
	t.Helper()
	r := &xdrReader{b: body}
	if r.u32() != 1 {
		t.Fatal("no directory attributes")
	}
	r.fixed(84)
	verf = r.u64()
	for r.u32() == 1 {
		var e dirEnt
		e.id = r.u64()
		e.name = string(r.opaque(255))
		e.cookie = r.u64()
		if plus {
			if r.u32() == 1 {
				r.fixed(84)
			}
			if r.u32() == 1 {
				e.fh = r.opaque(64)
			}
		}
		ents = append(ents, e)
	}
	eof = r.u32() == 1
	if r.bad || len(r.b) != 0 {
		t.Fatalf("malformed reply (%d bytes left)", len(r.b))
	}
	return verf, ents, eof
}

// READDIR(PLUS) resumes at every cookie it handed out, 1 included, on a
// merged directory (image + own layer), and the verifier changes with the
// directory.
func TestReaddirResumesAtEveryCookie(t *testing.T) {
	e, _, _ := nfsEnv(t)
	x := e.export("/nodes/pi1")
	writeFile(t, x, "/etc/own-file", "own\n", os.O_CREATE|os.O_WRONLY) // own layer, merged with the image's /etc
	etc := e.handle(t, "/nodes/pi1", "/etc")
	for _, plus := range []bool{false, true} {
		proc := uint32(procReaddir)
		args := func(cookie, verf uint64) []byte {
			a := xdrArgs(nil).opaque(etc).u64(cookie).u64(verf)
			if plus {
				return a.u32(8192).u32(65536)
			}
			return a.u32(65536)
		}
		if plus {
			proc = procReaddirplus
		}
		list := func(cookie, verf uint64) (uint64, []dirEnt, bool) {
			st, body := replyStatus(t, serve(t, e.srv, "127.0.0.1", callRecord(1, proc, credRoot, args(cookie, verf))), 1)
			if st != 0 {
				t.Fatalf("proc %d cookie %d: status %d", proc, cookie, st)
			}
			return parseReaddir(t, body, plus)
		}
		verf, all, eof := list(0, 0)
		var names []string
		for _, d := range all {
			names = append(names, d.name)
			if plus && d.name != ".." && len(d.fh) != handleLen {
				t.Errorf("READDIRPLUS %s: handle %x", d.name, d.fh)
			}
		}
		want := []string{".", "..", "hostname", "own-file", "passwd", "shadow", "ssh", "systemd"}
		if !eof || !slices.Equal(names, want) {
			t.Fatalf("proc %d: %v eof %v, want %v", proc, names, eof, want)
		}
		for i, d := range all {
			_, rest, eof := list(d.cookie, verf)
			if !eof || !slices.EqualFunc(rest, all[i+1:], func(a, b dirEnt) bool { return a.name == b.name && a.cookie == b.cookie && a.id == b.id }) {
				t.Errorf("proc %d resumed at cookie %d (after %q): %v", proc, d.cookie, d.name, rest)
			}
		}
		// Paging in small replies gives the same listing.
		if !plus {
			var paged []string
			cookie := uint64(0)
			for {
				a := xdrArgs(nil).opaque(etc).u64(cookie).u64(verf).u32(108 + 2*28)
				st, body := replyStatus(t, serve(t, e.srv, "127.0.0.1", callRecord(2, proc, credRoot, a)), 2)
				if st != 0 {
					t.Fatalf("paged: status %d", st)
				}
				_, ents, eof := parseReaddir(t, body, false)
				for _, d := range ents {
					paged = append(paged, d.name)
					cookie = d.cookie
				}
				if eof {
					break
				}
			}
			if !slices.Equal(paged, want) {
				t.Errorf("paged listing %v", paged)
			}
		}
		writeFile(t, x, "/etc/another", "x\n", os.O_CREATE|os.O_WRONLY)
		if v2, _, _ := list(0, 0); v2 == verf {
			t.Errorf("proc %d: verifier unchanged after a new file", proc)
		}
		if err := x.Remove("/etc/another"); err != nil {
			t.Fatal(err)
		}
	}
	// Reading a directory needs read permission.
	st, _ := replyStatus(t, serve(t, e.srv, "127.0.0.1", callRecord(3, procReaddir, credUser, xdrArgs(nil).opaque(e.handle(t, "/nodes/pi1", "/home/user")).u64(0).u64(0).u32(4096))), 3)
	if st != 0 {
		t.Errorf("READDIR of a 0755 dir as a user: %d", st)
	}
	x.mu.Lock()
	_ = x.setAttrs(x.t, "/home/user", func(host string, _ *unixStat) error { return chmodHost(host, 0o700) })
	x.mu.Unlock()
	st, _ = replyStatus(t, serve(t, e.srv, "127.0.0.1", callRecord(3, procReaddir, unixCred(1001, 1001), xdrArgs(nil).opaque(e.handle(t, "/nodes/pi1", "/home/user")).u64(0).u64(0).u32(4096))), 3)
	if st != nfs3ErrAcces {
		t.Errorf("READDIR of another user's 0700 dir: %d", st)
	}
}
