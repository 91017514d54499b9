package controller

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// With ports.api set the controller makes a token on first start, serves
// the API and status page on TCP behind it, and logs where the page is,
// never the token.
func TestAPIPort(t *testing.T) {
	c, st, _ := newTestController(t)
	port := freePort(t)
	cl, err := st.Update(func(d *cluster.Document) error { return d.Set(port, "ports", "api") })
	if err != nil {
		t.Fatal(err)
	}
	c.current.Store(cl)
	log := &syncBuffer{}
	c.log = slog.New(slog.NewTextHandler(log, nil))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	tokenFile := api.TokenFile(cl.Controller.StateDir)
	var token string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "status page") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	token, err = api.ReadToken(tokenFile)
	if err != nil {
		t.Fatalf("token after start: %v\n%s", err, log)
	}
	if fi, _ := os.Stat(tokenFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	logged := log.String()
	if want := "status page: http://10.99.0.1:"; !strings.Contains(logged, want) || strings.Contains(logged, token) {
		t.Errorf("log should name the page (%q) and not the token:\n%s", want, logged)
	}

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/", "", http.StatusUnauthorized},
		{"/", token, http.StatusOK},
		{"/v1/status", token, http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", token, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (token %v): %s, want %d", tc.path, tc.token != "", resp.Status, tc.want)
		}
	}
	st2 := c.Status(ctx)
	last := st2.Components[len(st2.Components)-1]
	if last.Name != "api" || last.State != "running" || !strings.Contains(last.Detail, "(token)") {
		t.Errorf("api component: %+v", last)
	}
	if c.StatusURL() != "http://10.99.0.1:"+strconv.Itoa(port)+"/" {
		t.Errorf("StatusURL %q", c.StatusURL())
	}
}
