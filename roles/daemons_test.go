package roles

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDaemonsAcceptConfigs hands the lb and router roles' rendered
// configs to the daemons that read them (Debian's haproxy, keepalived,
// nft and FRR's vtysh check modes): a config they refuse would leave the
// role failed on every node.
func TestDaemonsAcceptConfigs(t *testing.T) {
	c := builtins(t)
	render := func(t *testing.T, role string, vars map[string]string) map[string]string {
		t.Helper()
		f := sampleFacts()
		if vars != nil {
			f.Vars = map[string]map[string]string{role: vars}
		}
		tr, err := c.Render(sampleNode(t, role), f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, file := range tr.Files {
			out[file.Path] = string(file.Data)
		}
		return out
	}
	check := func(t *testing.T, name, data string, argv ...string) {
		t.Helper()
		bin, err := exec.LookPath(argv[0])
		if err != nil {
			t.Skipf("%s is not installed (make deps installs it)", argv[0])
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		for i, a := range argv {
			argv[i] = strings.ReplaceAll(a, "FILE", p)
		}
		out, err := exec.Command(bin, argv[1:]...).CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "warn") {
			t.Errorf("%s refuses %s: %v\n%s\n--- config:\n%s", argv[0], name, err, out, data)
		}
	}
	cases := []struct {
		name string
		role string
		vars map[string]string
	}{
		{"lb with db frontends", "lb", nil},
		{"lb without vip", "lb", map[string]string{}},
		{"router with ospf and routes", "router", nil},
		{"router plain", "router", map[string]string{"uplink": "wlan0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := render(t, tc.role, tc.vars)
			switch tc.role {
			case "lb":
				check(t, "haproxy.cfg", files["etc/haproxy/haproxy.cfg"], "haproxy", "-c", "-f", "FILE")
				check(t, "keepalived.conf", files["etc/keepalived/keepalived.conf"], "keepalived", "-f", "FILE", "-t")
			case "router":
				script := files["usr/local/sbin/pictl-router"]
				check(t, "pictl-router", script, "sh", "-n", "FILE")
				check(t, "ruleset.nft", nftRuleset(t, script), "nft", "-c", "-f", "FILE")
				check(t, "frr.conf", files["etc/frr/frr.conf"], "vtysh", "--dryrun", "-f", "FILE")
			}
		})
	}
}

// nftRuleset is the ruleset the router script feeds nft, with the
// script's variables substituted as the shell would.
func nftRuleset(t *testing.T, script string) string {
	t.Helper()
	_, rest, ok := strings.Cut(script, "<<NFT\n")
	ruleset, _, ok2 := strings.Cut(rest, "\nNFT\n")
	if !ok || !ok2 {
		t.Fatalf("no nft here-document in the router script:\n%s", script)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(script, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && (k == "subnet" || k == "uplink") {
			vars[k] = strings.Trim(v, "'")
		}
	}
	return strings.NewReplacer("$subnet", vars["subnet"], "$uplink", vars["uplink"]).Replace(ruleset) + "\n"
}
