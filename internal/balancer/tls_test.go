package balancer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/websocket"

	"github.com/pictl/pictl/internal/testcert"
)

// startTLSBalancer serves a Balancer on a loopback TLS listener.
func startTLSBalancer(t *testing.T, cfg Config) (*Balancer, string, *x509.CertPool) {
	t.Helper()
	cfg.Registry = prometheus.NewRegistry()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := testcert.New(t, "pictl test")
	cert, pool := c.TLS, c.Pool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ServeTLS(ctx, ln, &tls.Config{Certificates: []tls.Certificate{cert}}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
		b.Close()
	})
	return b, "https://" + ln.Addr().String(), pool
}

func tlsClient(pool *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Over TLS, HTTP/2 and HTTP/1.1 clients reach the members with
// X-Forwarded-Proto https; a dead member is skipped by a retry; the
// sticky cookie pins; no member is a 503 with Retry-After.
func TestTLSListener(t *testing.T) {
	seen := make(chan http.Header, 100)
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			select {
			case seen <- r.Header.Clone():
			default:
			}
			w.Write([]byte(name))
		}
	}
	a, bb := backendServer(t, "a", handler("a")), backendServer(t, "b", handler("b"))
	b, url, pool := startTLSBalancer(t, Config{Policy: RoundRobin, StickyCookie: "PICTLSRV"})
	if _, err := (&tls.Dialer{Config: &tls.Config{RootCAs: pool}}).Dial("tcp", strings.TrimPrefix(url, "https://")); err != nil {
		t.Fatal(err)
	}
	// No member yet.
	resp, err := tlsClient(pool, true).Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("no member: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}

	dead := memberOf(t, "dead", closedPort(t))
	b.SetMembers([]Member{memberOf(t, "a", hostOf(a)), memberOf(t, "b", hostOf(bb)), dead})
	for _, h2 := range []bool{true, false} {
		client := tlsClient(pool, h2)
		got := map[string]int{}
		for range 12 {
			resp, err := client.Get(url + "/page")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("h2=%v: %s %q", h2, resp.Status, body)
			}
			if want := map[bool]int{true: 2, false: 1}[h2]; resp.ProtoMajor != want {
				t.Fatalf("h2=%v: protocol %s", h2, resp.Proto)
			}
			got[string(body)]++
		}
		if got["a"] == 0 || got["b"] == 0 || got["a"]+got["b"] != 12 {
			t.Errorf("h2=%v: spread %v", h2, got)
		}
	}
	h := <-seen
	if h.Get("X-Forwarded-Proto") != "https" || !strings.HasPrefix(h.Get("X-Forwarded-For"), "127.0.0.1") || !strings.Contains(h.Get("Via"), "pictl") {
		t.Errorf("member saw %v", h)
	}
	if memberStatus(b, "dead").Errors == 0 {
		t.Error("the dead member was never tried (or its failure not counted)")
	}

	// Sticky: the cookie the first answer sets pins the next ones.
	client := tlsClient(pool, true)
	resp, err = client.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "PICTLSRV" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != string(first) || !cookie.Secure {
		t.Fatalf("sticky cookie %+v for member %s", cookie, first)
	}
	for range 6 {
		req, _ := http.NewRequest("GET", url+"/", nil)
		req.AddCookie(&http.Cookie{Name: "PICTLSRV", Value: cookie.Value})
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != string(first) {
			t.Fatalf("sticky to %s, served by %s", first, body)
		}
	}
	if st := memberStatus(b, "a"); st.Requests == 0 || st.P50 == 0 {
		t.Errorf("member a's counters: %+v", st)
	}
}

// A WebSocket (wss://) passes through the TLS listener to a plain member
// and back, message by message.
func TestWebSocketOverTLS(t *testing.T) {
	ws := wsEchoMember(t)
	b, url, pool := startTLSBalancer(t, Config{})
	b.SetMembers([]Member{memberOf(t, "ws", hostOf(ws))})
	host := strings.TrimPrefix(url, "https://")
	cfg, err := websocket.NewConfig("wss://"+host+"/echo", url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TlsConfig = &tls.Config{RootCAs: pool}
	conn, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkEcho(t, conn)
}
