package hardening

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/connlimit"
)

type statusOnly struct{}

func (statusOnly) Status(context.Context) api.Status                    { return api.Status{} }
func (statusOnly) Nodes(context.Context) ([]api.Node, error)            { return nil, nil }
func (statusOnly) Discovered(context.Context) ([]api.Discovered, error) { return nil, nil }
func (statusOnly) ResetNode(context.Context, string, bool) error        { return nil }
func (statusOnly) SwitchByReboot(context.Context, string) error         { return nil }

// Issue 18 row 2 (API): idle connections and keep-alive connections left
// open after a 401, thousands of them from three addresses. The TCP API
// holds a bounded number, drops the unauthenticated ones within seconds,
// answers an authenticated client, and the unix socket keeps answering.
func TestAPIConnectionFlood(t *testing.T) {
	raiseNOFILE(t)
	const perHost = 8
	token := strings.Repeat("t", 40)
	socket := filepath.Join(t.TempDir(), "api.sock")
	srv := api.NewServer(socket, statusOnly{}, nil)
	srv.Limits = connlimit.Config{MaxPerClient: perHost, MaxConns: 64, UnprovenTimeout: 2 * time.Second}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenTCP("127.0.0.1:0", token); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	defer func() { cancel(); <-errc }()
	addr := srv.TCPAddr().String()
	unix := api.NewClient(socket)
	authed := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).DialContext}}
	check := func(when string) {
		t.Helper()
		select {
		case err := <-errc:
			t.Fatalf("%s: API server stopped: %v", when, err)
		default:
		}
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := unix.Status(c); err != nil {
			t.Fatalf("%s: unix socket: %v", when, err)
		}
		req, _ := http.NewRequestWithContext(c, "GET", "http://"+addr+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := authed.Do(req)
		if err != nil {
			t.Fatalf("%s: authenticated TCP client: %v", when, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: authenticated TCP client got %s", when, resp.Status)
		}
	}
	check("before")
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	const total = 3000
	for i := 0; i < total; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 2+i%3))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		if i%2 == 0 {
			// A request without the token, answered 401, the
			// connection left open (keep-alive).
			fmt.Fprintf(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 401 {
					t.Fatalf("unauthenticated request got %s", resp.Status)
				}
			}
		}
		if i%500 == 499 {
			check("during")
			if n := srv.TCPConns(); n > 3*perHost+2 {
				t.Fatalf("%d TCP connections open, want at most %d", n, 3*perHost+2)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for srv.TCPConns() > 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// The authenticated client's keep-alive connection may remain.
	if n := srv.TCPConns(); n > 1 {
		t.Errorf("%d unauthenticated connections still open after the timeout", n)
	}
	check("after")
}
