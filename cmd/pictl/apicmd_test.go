package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/store"
)

func TestAPIToken(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.fails("set ports.api", "api", "token")
	if _, err := store.New(e.config).Update(func(d *cluster.Document) error { return d.Set(8080, "ports", "api") }); err != nil {
		t.Fatal(err)
	}
	e.fails("pictl serve creates it", "api", "token")

	tok, _, err := api.LoadOrCreateToken(api.TokenFile(filepath.Join(e.dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ok("api", "token"); got != tok+"\n" {
		t.Errorf("api token printed %q, want the token", got)
	}
	if got, want := e.ok("api", "token", "--url"), "http://10.99.0.1:8080/?token="+tok+"\n"; got != want {
		t.Errorf("api token --url printed %q, want %q", got, want)
	}
}

// A real `pictl serve` with ports.api: it logs where the page is (not the
// token), and the page answers on the controller's address with the token
// from `pictl api token` only.
func TestServeStatusPage(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	if _, err := store.New(e.config).Update(func(d *cluster.Document) error { return d.Set(8080, "ports", "api") }); err != nil {
		t.Fatal(err)
	}
	ns, log := e.startServeNS()
	waitFor(t, "the status page line in the log", func() bool {
		return strings.Contains(log.String(), "status page: http://10.99.0.1:8080/")
	}, log)
	tok := strings.TrimSpace(e.ok("api", "token"))
	if strings.Contains(log.String(), tok) {
		t.Errorf("the log carries the token:\n%s", log)
	}

	for _, tc := range []struct {
		token string
		want  int
		body  string
	}{
		{"", http.StatusUnauthorized, "pictl api token"},
		{tok, http.StatusOK, "<b>pi3</b>"},
	} {
		var code int
		var text string
		// The port is inside the namespace: dial there, then speak HTTP
		// over that one connection (http.Transport dials on other threads).
		err := ns.Do(func() error {
			conn, err := net.DialTimeout("tcp", "10.99.0.1:8080", 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			req, _ := http.NewRequest(http.MethodGet, "http://10.99.0.1:8080/", nil)
			req.Close = true
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if err := req.Write(conn); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			code, text = resp.StatusCode, string(b)
			return err
		})
		if err != nil {
			t.Fatalf("GET / in the namespace: %v\n%s", err, log)
		}
		if code != tc.want || !strings.Contains(text, tc.body) {
			t.Errorf("GET / with token %v: %d, want %d with %q:\n%s", tc.token != "", code, tc.want, tc.body, text)
		}
	}
}
