package roles

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestSystemdAnalyzeVerify runs Debian's systemd-analyze verify on every
// unit a role's tree writes or drops into. It exits 0 on unknown keys and
// other warnings, so any output on stderr fails the test.
//
// The tree is laid into a temporary root together with a copy of the
// host's systemd units (multi-user.target, network-online.target, ...).
// The units roles take from packages (nginx.service, mariadb.service,
// haproxy.service, keepalived.service) are not on the host: the test
// writes stub unit files for them into the root, so that their drop-ins
// are verified against something that exists; likewise stub executables
// for the commands the units name that the host root lacks (the agent
// binary).
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (make deps installs Debian's systemd): unit files not verified")
	}
	hostUnits := hostUnitDir()
	dir := writeRoles(t, map[string]string{
		// A user role with a unit of its own, a rw mount and a drop-in.
		"shop.yaml": `extends: web
mounts:
  scratch: {path: /srv/shop-data, mode: rw}
units:
  shop.service:
    mounts: [scratch]
    unit:
      Unit: ["Description=shop for {{.Node.Name}}", After=network-online.target]
      Service: ["ExecStart=/usr/local/bin/shop --data '/srv/shop-data' --pct 50%%"]
      Install: [WantedBy=multi-user.target]
  nginx.service:
    dropin:
      Service: [LimitNOFILE=4096]
`,
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range append(c.Names(), NoRole) {
		t.Run(role, func(t *testing.T) {
			if problems, units := verifyRole(t, analyze, hostUnits, c, role); problems != "" {
				t.Errorf("systemd-analyze verify %s:\n%s", strings.Join(units, " "), problems)
			} else {
				t.Logf("verified %s", strings.Join(units, " "))
			}
		})
	}
	// The check is not vacuous: a misspelt setting is reported.
	broken, err := LoadCatalog(writeRoles(t, map[string]string{
		"broken.yaml": "units:\n  nginx.service:\n    dropin:\n      Service: [RestartSecs=2s]\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if problems, _ := verifyRole(t, analyze, hostUnits, broken, "broken"); !strings.Contains(problems, "RestartSecs") {
		t.Errorf("a misspelt setting passes verification: %q", problems)
	}
}

// hostUnitDir is where the host's systemd keeps its units.
func hostUnitDir() string {
	if _, err := os.Stat("/usr/lib/systemd/system/multi-user.target"); err == nil {
		return "/usr/lib/systemd/system"
	}
	return "/lib/systemd/system"
}

// verifyRole lays the tree of role into a temporary root and returns what
// systemd-analyze verify reports (stderr, and the exit status if not 0)
// and the units it verified.
func verifyRole(t *testing.T, analyze, hostUnits string, c *Catalog, role string) (string, []string) {
	t.Helper()
	node := sampleNodes()[0]
	node.Role = role
	tr, err := c.Render(node, sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	copyTree(t, hostUnits, filepath.Join(root, "usr/lib/systemd/system"))
	for _, r := range c.Names() {
		rr, _ := c.Role(r)
		for _, u := range rr.Units() {
			if rr.units[u].unit == nil {
				writeRootFile(t, root, "usr/lib/systemd/system/"+u, "[Unit]\nDescription=stub of the packaged "+u+"\n\n[Service]\nExecStart=/bin/true\n", 0o644)
			}
		}
	}
	// Commands the image provides (and the agent binary the
	// controller places) as stub executables.
	for _, cmd := range []string{DefaultAgentBinaryPath, "usr/local/bin/shop", "bin/true", "bin/sh", "bin/systemd-tmpfiles", "bin/mkdir", "bin/kill", "usr/sbin/haproxy", "usr/bin/mariadb", "usr/sbin/nft", "bin/ip"} {
		writeRootFile(t, root, cmd, "#!/bin/sh\n", 0o755)
	}
	var units []string
	for _, f := range tr.Files {
		if f.IsWhiteout() {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if f.IsSymlink() {
			if err := os.Symlink(string(f.Data), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
		rel, ok := strings.CutPrefix(f.Path, unitDir+"/")
		if !ok {
			continue
		}
		name := rel
		if dropinOf, ok := strings.CutSuffix(path.Dir(rel), ".d"); ok && path.Dir(dropinOf) == "." {
			name = dropinOf // verify the unit with its drop-in
		} else if path.Dir(rel) != "." {
			continue
		}
		if !slices.Contains(units, name) {
			units = append(units, name)
		}
	}
	units = append(units, "default.target")
	cmd := exec.Command(analyze, append([]string{"verify", "--root=" + root, "--man=no"}, units...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	problems := stderr.String()
	if err != nil {
		problems += fmt.Sprintf("%v\nstdout:\n%s", err, out)
	}
	return problems, units
}

func writeRootFile(t *testing.T, root, rel, content string, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a directory of unit files (regular files and symlinks).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, data, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTmpfilesApply runs the real systemd-tmpfiles --create on every
// role's tmpfiles.d file inside a temporary root, whose /etc/passwd and
// /etc/group hold the users the packages would create (mysql for
// mariadb-server, adm from base-passwd): each line must parse and apply
// with no message, making the directories with the owner and mode it says.
func TestTmpfilesApply(t *testing.T) {
	tmpfiles, err := exec.LookPath("systemd-tmpfiles")
	if err != nil {
		t.Skip("systemd-tmpfiles is not installed (make deps installs Debian's systemd): tmpfiles lines not applied")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create directories owned by other users")
	}
	c := builtins(t)
	want := map[string]struct {
		path     string
		uid, gid uint32
	}{
		"web": {"var/log/nginx", 0, 4},
		"db":  {"var/lib/mysql", 101, 102},
	}
	for _, role := range c.Names() {
		tr, err := c.Render(sampleNode(t, role), sampleFacts())
		if err != nil {
			t.Fatal(err)
		}
		conf := path.Join(tmpfilesDir, "pictl-role-"+role+".conf")
		f, ok := tr.File(conf)
		if !ok {
			if _, expected := want[role]; expected {
				t.Errorf("%s: no %s", role, conf)
			}
			continue
		}
		root := t.TempDir()
		writeRootFile(t, root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nmysql:x:101:102:MariaDB:/nonexistent:/bin/false\n", 0o644)
		writeRootFile(t, root, "etc/group", "root:x:0:\nadm:x:4:\nwww-data:x:33:\nmysql:x:102:\n", 0o644)
		writeRootFile(t, root, conf, string(f.Data), 0o644)
		cmd := exec.Command(tmpfiles, "--create", "--root="+root, filepath.Join(root, conf))
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("%s: systemd-tmpfiles --create: %v\n%s", role, err, out)
			continue
		}
		w, ok := want[role]
		if !ok {
			continue
		}
		info, err := os.Stat(filepath.Join(root, w.path))
		if err != nil {
			t.Errorf("%s: %v", role, err)
			continue
		}
		st := info.Sys().(*syscall.Stat_t)
		if !info.IsDir() || info.Mode().Perm() != 0o755 || st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: %s is %v %d:%d, want a 0755 directory owned %d:%d", role, w.path, info.Mode(), st.Uid, st.Gid, w.uid, w.gid)
		}
	}
}
