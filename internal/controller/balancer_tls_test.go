package controller

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/testcert"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn as
// PEM files and returns their paths and the certificate.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	c := testcert.New(t, cn)
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Leaf
}

// The TLS listener of balancer.tls: HTTP/2 to the members, a renewed
// certificate served after a reload without a restart, the listener closed
// when tls: goes and opened when it comes back.
func TestBalancerTLSListener(t *testing.T) {
	a := webServer(t, "a", nil)
	fmem := newFakeMembership()
	fmem.set("web", a)
	dir := t.TempDir()
	certFile, keyFile, cert1 := writeCert(t, dir, "first")
	port, tlsPort := freePort(t), freePort(t)
	tlsYAML := func(p int) string {
		return "balancer:\n  tls: {port: " + strconv.Itoa(p) + ", cert: " + certFile + ", key: " + keyFile + "}\n"
	}
	bc, cur := startBalancerComponent(t, balancerCluster(t, port, tlsYAML(tlsPort)), fmem)
	waitUntil(t, "a up", func() bool { return memberState(bc, "a") == "up" })

	get := func(p int, want *x509.Certificate) error {
		pool := x509.NewCertPool()
		pool.AddCert(want)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, DisableKeepAlives: true,
		}}
		resp, err := client.Get("https://127.0.0.1:" + strconv.Itoa(p) + "/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "a" {
			t.Fatalf("over TLS: %s %q", resp.Proto, body)
		}
		return nil
	}
	if err := get(tlsPort, cert1); err != nil {
		t.Fatal(err)
	}
	// curl, another HTTP/2 client than Go's.
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sS", "--http2", "--cacert", certFile, "-w", " %{http_version}",
			"https://127.0.0.1:"+strconv.Itoa(tlsPort)+"/").CombinedOutput()
		if err != nil || string(out) != "a 2" {
			t.Errorf("curl --http2: %q, %v", out, err)
		}
	} else {
		t.Log("curl not installed (make deps): only Go's client tried")
	}
	if got := bc.Balancer().TLSListen; got != "127.0.0.1:"+strconv.Itoa(tlsPort) {
		t.Errorf("tls_listen %q", got)
	}

	// Renewed in place; a reload (cluster.yaml edit or SIGHUP) reads it.
	_, _, cert2 := writeCert(t, dir, "second")
	reload := func(extra string) {
		cl := balancerCluster(t, port, extra)
		cur.Store(cl)
		bc.Reload(t.Context(), cl)
	}
	reload(tlsYAML(tlsPort))
	waitUntil(t, "the renewed certificate", func() bool { return get(tlsPort, cert2) == nil })

	reload("")
	waitUntil(t, "TLS listener closed", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tlsPort))
		if err == nil {
			c.Close()
		}
		return err != nil && bc.Balancer().TLSListen == ""
	})
	other := freePort(t)
	reload(tlsYAML(other))
	waitUntil(t, "TLS listener on the new port", func() bool { return get(other, cert2) == nil })

	// A key that does not match: the listener keeps the certificate it has.
	_, badKey, _ := writeCert(t, t.TempDir(), "third")
	// The policy changes with it, to see when the reload was applied.
	cl := balancerCluster(t, port, "balancer:\n  policy: round-robin\n  tls: {port: "+strconv.Itoa(other)+", cert: "+certFile+", key: "+badKey+"}\n")
	cur.Store(cl)
	bc.Reload(t.Context(), cl)
	waitUntil(t, "the reload applied", func() bool { return bc.Balancer().Policy == "round-robin" && memberState(bc, "a") == "up" })
	if err := get(other, cert2); err != nil {
		t.Errorf("after an unreadable renewal: %v", err)
	}
}
