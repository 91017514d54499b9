// Package testnginx runs a real nginx (nginx-light, in the Makefile's
// DEBS) serving one page, for tests of the balancer against a real peer.
package testnginx

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Start serves page as /index.html (and /) on listen (host:port) until the
// test ends; it returns once nginx accepts connections there.
func Start(t testing.TB, listen, page string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx not installed (make deps)")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
error_log %[1]s/error.log error;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  server { listen %[2]s; root %[1]s; }
}
`, dir, listen)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", "nginx.conf", "-p", dir, "-e", dir+"/error.log")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx never listened on %s: %v\n%s", listen, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
