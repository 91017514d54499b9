package roles

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWebConfigServesWithNginx runs the real nginx (Debian's nginx-light)
// on the web role's rendered site config, as is, and fetches a page of
// the docroot with curl. It runs in a network and mount namespace of its
// own (unshare): nginx listens on port 8000 of that namespace's loopback
// only, and the tmpfs standing in for the www mount on /srv is never seen
// by the host.
func TestWebConfigServesWithNginx(t *testing.T) {
	for _, tool := range []string{"nginx", "curl", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network and mount namespace")
	}
	tr, err := builtins(t).Render(sampleNode(t, "web"), sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	site, ok := tr.File("etc/nginx/conf.d/pictl-web.conf")
	if !ok {
		t.Fatal("no site config in the web tree")
	}
	dir := t.TempDir()
	sitePath := filepath.Join(dir, "pictl-web.conf")
	if err := os.WriteFile(sitePath, site.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The main config of Debian's nginx.conf, reduced to what a test
	// needs: conf.d/*.conf is included inside http {} as there.
	main := "pid " + dir + "/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n\taccess_log off;\n\tinclude /etc/nginx/mime.types;\n\tinclude " + sitePath + ";\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `set -e
ip link set lo up
mount --make-rprivate /
mount -t tmpfs tmpfs /srv
mkdir -p /srv/www/sub
echo "page from the www volume" > /srv/www/index.html
nginx -q -t -c "$D/nginx.conf" -p "$D/"
nginx -c "$D/nginx.conf" -p "$D/"
trap 'kill $(cat "$D/nginx.pid")' EXIT
echo "index: $(curl -sS http://127.0.0.1:8000/)"
echo "missing: $(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/nope.html)"
echo "port 80: $(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:80/ 2>/dev/null || echo refused)"
`
	cmd := exec.Command("unshare", "--net", "--mount", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "D="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"index: page from the www volume\n", "missing: 404\n", "port 80: 000refused\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
