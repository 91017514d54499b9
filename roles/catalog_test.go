package roles

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBadRoleFiles: each mistake in a user role is reported at the file,
// line and column where it was written (template syntax errors at their
// line: text/template gives no column).
func TestBadRoleFiles(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // "FILE:LINE[:COL]: message" without the directory
	}{
		{"unknown key", map[string]string{"r.yaml": "description: x\ndescriptoin: y\n"},
			`r.yaml:2:1: unknown key "descriptoin" in a role file; write description: instead`},
		{"bad type", map[string]string{"r.yaml": "packages: {nginx: yes}\n"},
			`r.yaml:1:11: packages must be a list, not a mapping`},
		{"nested unknown key", map[string]string{"r.yaml": "units:\n  nginx.service:\n    drop-in: {}\n"},
			`r.yaml:3:5: unknown key "drop-in" in unit nginx.service; write dropin: instead`},
		{"yaml syntax", map[string]string{"r.yaml": "units: [a,\n"},
			`r.yaml:2:1: YAML syntax error: did not find expected node content`},
		{"inline template syntax", map[string]string{"r.yaml": "files:\n  /etc/motd: {content: \"hello {{.Node.Name\"}\n"},
			`r.yaml:2:25: template syntax error: unclosed action`},
		{"block template syntax", map[string]string{"r.yaml": "files:\n  /etc/motd:\n    content: |\n      hello\n      {{if .Node.Name}}\n"},
			`r.yaml:6: template syntax error: unexpected EOF`},
		{"template file syntax", map[string]string{"r/role.yaml": "files:\n  /etc/motd: {template: motd.tmpl}\n", "r/motd.tmpl": "line one\n{{range}}\n"},
			`r/motd.tmpl:2: template syntax error: missing value for range`},
		{"template file missing", map[string]string{"r.yaml": "files:\n  /etc/motd: {template: motd.tmpl}\n"},
			`r.yaml:2:25: template motd.tmpl: open motd.tmpl: no such file or directory`},
		{"template outside", map[string]string{"r.yaml": "files:\n  /etc/motd: {template: ../motd.tmpl}\n"},
			`r.yaml:2:25: template "../motd.tmpl" is not a file of the role's directory`},
		{"extends unknown", map[string]string{"r.yaml": "extends: webb\n"},
			`r.yaml:1:10: role r extends "webb", which is not a built-in role`},
		{"built-in name", map[string]string{"web.yaml": "description: mine\n"},
			`web.yaml: role web is built in; name yours differently and write extends: web in it`},
		{"volume not mounted", map[string]string{"r.yaml": "units:\n  nginx.service: {mounts: [www]}\n"},
			`r.yaml:2:27: unit nginx.service needs volume www, which role r does not mount`},
		{"bad mode", map[string]string{"r.yaml": "files:\n  /etc/motd: {content: hi, mode: \"999\"}\n"},
			`r.yaml:2:34: mode "999" is not octal permission bits`},
		{"bad unit name", map[string]string{"r.yaml": "units:\n  nginx: {}\n"},
			`r.yaml:2:3: "nginx" is not a unit name`},
		{"pictl's unit", map[string]string{"r.yaml": "units:\n  pictl-role-x.target: {}\n"},
			`r.yaml:2:3: unit pictl-role-x.target is pictl's own`},
		{"two sources", map[string]string{"r.yaml": "files:\n  /etc/motd: {content: hi, remove: true}\n"},
			`r.yaml:2:3: file /etc/motd has 2 sources`},
		{"reserved file", map[string]string{"r.yaml": "files:\n  /etc/hostname: {content: x}\n"},
			`r.yaml:2:3: file /etc/hostname is pictl's own`},
		{"sysctl file", map[string]string{"r.yaml": "files:\n  /etc/sysctl.d/50-forward.conf: {content: net.ipv4.ip_forward=1}\n"},
			`r.yaml:2:3: file /etc/sysctl.d/50-forward.conf would outlive the role`},
		{"relative file", map[string]string{"r.yaml": "files:\n  etc/motd: {content: x}\n"},
			`r.yaml:2:3: file "etc/motd" is not an absolute clean path`},
		{"setting without =", map[string]string{"r.yaml": "units:\n  nginx.service:\n    dropin:\n      Service: [LimitNOFILE]\n"},
			`r.yaml:4:17: "LimitNOFILE" is not a Key=value setting`},
		{"bad section", map[string]string{"r.yaml": "units:\n  nginx.service:\n    dropin:\n      service: [A=b]\n"},
			`r.yaml:4:7: "service" is not a unit file section`},
		{"balancer port", map[string]string{"r.yaml": "balancer: {port: http}\n"},
			`r.yaml:1:18: balancer port "http" is not a port number`},
		{"check type", map[string]string{"r.yaml": "balancer: {port: 80, check: {type: udp}}\n"},
			`r.yaml:1:36: check type "udp" is not http or tcp`},
		{"var name", map[string]string{"r.yaml": "vars: {my-var: x}\n"},
			`r.yaml:1:8: var name "my-var" is not a plain name`},
		{"mount path", map[string]string{"r.yaml": "mounts:\n  www: {path: srv/www}\n"},
			`r.yaml:2:15: mount point "srv/www" is not an absolute clean path`},
		{"mount mode", map[string]string{"r.yaml": "mounts:\n  www: {path: /srv/www, mode: rx}\n"},
			`r.yaml:2:31: mount mode "rx" is not ro or rw`},
		{"package name", map[string]string{"r.yaml": "packages: [nginx-light|Nginx]\n"},
			`r.yaml:1:12: "Nginx" is not a package name`},
		{"duplicate key", map[string]string{"r.yaml": "packages: [a]\npackages: [b]\n"},
			`r.yaml:2:1: duplicate key packages (first at line 1)`},
		{"role dir without role.yaml", map[string]string{"r/motd.tmpl": "x"},
			`r: a role directory without role.yaml`},
		{"defined twice", map[string]string{"r.yaml": "{}", "r/role.yaml": "{}"},
			`role r is also defined in`},
		{"yaml syntax in a later line", map[string]string{"r.yaml": "description: x\npackages: [a, b\nunits: {}\n"},
			`r.yaml:2:1: YAML syntax error: did not find expected ',' or ']'`},
		{"two documents", map[string]string{"r.yaml": "description: x\n---\ndescription: y\n"},
			`r.yaml:2:1: the file holds more than one YAML document`},
		{"merge key", map[string]string{"r.yaml": "base: &b {}\n"},
			`r.yaml:1:1: unknown key "base" in a role file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRoles(t, tt.files)
			_, err := LoadCatalog(dir)
			if err == nil {
				t.Fatal("loaded")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			want := tt.want
			if strings.Contains(want, ":") && !strings.HasPrefix(want, "role ") {
				want = filepath.Join(dir, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

// TestAllErrorsAtOnce: a file with several mistakes reports each.
func TestAllErrorsAtOnce(t *testing.T) {
	dir := writeRoles(t, map[string]string{"r.yaml": "descriptoin: x\npackages: {a: b}\nunits:\n  nginx: {}\n"})
	_, err := LoadCatalog(dir)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	for i, line := range []int{1, 2, 4} {
		if list[i].Line != line {
			t.Errorf("error %d at line %d, want %d: %v", i, list[i].Line, line, list[i])
		}
	}
}

func TestUserRoleLayouts(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"flat.yaml":           "description: flat\nfiles:\n  /etc/flat: {template: flat.tmpl}\n",
		"flat.tmpl":           "flat {{.Node.Name}}\n",
		"nested/role.yaml":    "description: nested\nfiles:\n  /etc/nested: {template: nested.tmpl}\n",
		"nested/nested.tmpl":  "nested {{.Node.Name}}\n",
		".swp.yaml":           "garbage: [",
		"README.md":           "not a role",
		"nested/.hidden.yaml": "not read",
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"web", "db", "lb", "router", "flat", "nested"}) {
		t.Fatalf("Names() = %v", got)
	}
	for _, role := range []string{"flat", "nested"} {
		n := sampleNode(t, "web")
		n.Role = role
		tr, err := c.Render(n, sampleFacts())
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := tr.File("etc/" + role); !ok || string(f.Data) != role+" pi1\n" {
			t.Errorf("%s: etc/%s = %q", role, role, f.Data)
		}
		if r, _ := c.Role(role); r.Builtin() || r.Description() != role {
			t.Errorf("%s: builtin %v description %q", role, r.Builtin(), r.Description())
		}
	}
}

func TestMissingUserDir(t *testing.T) {
	c, err := LoadCatalog(filepath.Join(t.TempDir(), "nope"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Names()) != 4 {
		t.Fatalf("Names() = %v", c.Names())
	}
}
