package balancer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/websocket"
)

// loadLoop runs GETs from several keep-alive clients until stop is called,
// counting failures (transport errors or a status other than 200).
type loadLoop struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       func()
}

func startLoad(t *testing.T, url string, workers int) *loadLoop {
	t.Helper()
	l := &loadLoop{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				if err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.failed.Add(1)
					l.lastErr.Store(resp.Status)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	l.stop = func() { cancel(); wg.Wait() }
	return l
}

func (l *loadLoop) check(t *testing.T) {
	t.Helper()
	l.stop()
	if l.failed.Load() != 0 {
		t.Fatalf("%d of %d GETs failed (last: %v)", l.failed.Load(), l.failed.Load()+l.ok.Load(), l.lastErr.Load())
	}
	if l.ok.Load() == 0 {
		t.Fatal("no GET went through")
	}
	t.Logf("%d GETs, none failed", l.ok.Load())
}

// resettingServer accepts connections, reads a request head and closes
// with RST, counting the requests it saw.
func resettingServer(t *testing.T) (addr string, seen *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						break
					}
					if line == "\r\n" {
						seen.Add(1)
						break
					}
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), seen
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRetries(t *testing.T) {
	good := backendServer(t, "good", nil)
	resetAddr, resetSeen := resettingServer(t)
	tests := []struct {
		name       string
		bad        string // the other member's address
		method     string
		wantStatus int
		wantSeen   int64 // requests the resetting member saw
	}{
		{"GET after connect refused", closedPort(t), "GET", 200, 0},
		{"POST after connect refused", closedPort(t), "POST", 200, 0},
		{"GET after reset", resetAddr, "GET", 200, 1},
		{"PUT after reset", resetAddr, "PUT", 200, 1},
		{"POST after reset is not retried", resetAddr, "POST", 502, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resetSeen.Store(0)
			// Round-robin with the bad member first, and no ejection,
			// so every request tries the bad member first.
			b, addr := startBalancer(t, Config{Policy: RoundRobin, PassiveFailures: 1000})
			bad := memberOf(t, "bad", tc.bad)
			bad.Weight = 1000
			b.SetMembers([]Member{bad, memberOf(t, "good", hostOf(good))})
			req, _ := http.NewRequest(tc.method, "http://"+addr+"/", strings.NewReader("body"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if resetSeen.Load() != tc.wantSeen {
				t.Fatalf("resetting member saw %d requests, want %d", resetSeen.Load(), tc.wantSeen)
			}
		})
	}
}

func TestPassiveEjectionAndRecovery(t *testing.T) {
	good := backendServer(t, "good", nil)
	var failing atomic.Bool
	failing.Store(true)
	flaky := backendServer(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("flaky"))
	})
	b, addr := startBalancer(t, Config{Policy: RoundRobin, Passive5xx: 3, EjectBase: 50 * time.Millisecond})
	b.SetMembers([]Member{memberOf(t, "flaky", hostOf(flaky)), memberOf(t, "good", hostOf(good))})
	for i := 0; i < 20; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	st := memberStatus(b, "flaky")
	if st.Ejections == 0 {
		t.Fatalf("a member answering 503 was never ejected: %+v", st)
	}
	failing.Store(false)
	waitFor(t, "flaky to take requests again", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body) == "flaky"
	})
}

func memberStatus(b *Balancer, name string) MemberStatus {
	for _, m := range b.Status().Members {
		if m.Name == name {
			return m
		}
	}
	return MemberStatus{}
}

func TestActiveHealthChecks(t *testing.T) {
	var healthy atomic.Bool
	srv := backendServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(500)
			return
		}
		w.Write([]byte("a"))
	})
	b, _ := startBalancer(t, Config{Health: HealthCheck{Interval: 20 * time.Millisecond, Path: "/health", Rise: 2, Fall: 2}})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})
	if s := memberStatus(b, "a").State; s != "pending" {
		t.Fatalf("member failing its checks is %s, want pending", s)
	}
	healthy.Store(true)
	waitFor(t, "member up", func() bool { return memberStatus(b, "a").State == "up" })
	healthy.Store(false)
	waitFor(t, "member down", func() bool { return memberStatus(b, "a").State == "down" })
	healthy.Store(true)
	waitFor(t, "member up again", func() bool { return memberStatus(b, "a").State == "up" })
}

func TestMembershipChangesUnderLoad(t *testing.T) {
	a, bb, c := backendServer(t, "a", nil), backendServer(t, "b", nil), backendServer(t, "c", nil)
	b, addr := startBalancer(t, Config{})
	ma, mb, mc := memberOf(t, "a", hostOf(a)), memberOf(t, "b", hostOf(bb)), memberOf(t, "c", hostOf(c))
	b.SetMembers([]Member{ma})
	load := startLoad(t, "http://"+addr+"/", 8)
	steps := []struct {
		what string
		do   func()
	}{
		{"add b", func() { b.SetMembers([]Member{ma, mb}) }},
		{"add c", func() { b.SetMembers([]Member{ma, mb, mc}) }},
		{"drain a", func() {
			if err := b.Drain(context.Background(), "a"); err != nil {
				t.Error(err)
			}
		}},
		{"remove a", func() { b.SetMembers([]Member{mb, mc}) }},
		{"b not ready", func() { nb := mb; nb.Ready = false; b.SetMembers([]Member{nb, mc}) }},
		{"a back, b gone", func() { b.SetMembers([]Member{ma, mc}) }},
		{"c gone", func() { b.SetMembers([]Member{ma}) }},
	}
	for _, s := range steps {
		before := load.ok.Load()
		s.do()
		waitFor(t, "requests after "+s.what, func() bool { return load.ok.Load() > before+200 })
	}
	load.check(t)
}

func TestDrainLetsInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := backendServer(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		w.Write([]byte("slow"))
	})
	other := backendServer(t, "other", nil)
	b, addr := startBalancer(t, Config{})
	b.SetMembers([]Member{memberOf(t, "slow", hostOf(slow))})
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(body)
	}()
	<-started
	b.SetMembers([]Member{memberOf(t, "slow", hostOf(slow)), memberOf(t, "other", hostOf(other))})
	drained := make(chan error, 1)
	go func() { drained <- b.Drain(context.Background(), "slow") }()
	waitFor(t, "slow draining", func() bool { return memberStatus(b, "slow").State == "draining" })
	// New requests go elsewhere while the old one is still running.
	for i := 0; i < 5; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "other" {
			t.Fatalf("request went to %q during drain", body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if body := <-got; body != "slow" {
		t.Fatalf("in-flight request got %q", body)
	}
}

func TestSlowClientsRefusedWithoutHarm(t *testing.T) {
	srv := backendServer(t, "a", nil)
	b, addr := startBalancer(t, Config{ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4096})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})
	load := startLoad(t, "http://"+addr+"/", 4)

	// Slowloris: a header byte every 50 ms never completes in time.
	var slow []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		slow = append(slow, c)
	}
	closed := make(chan int, len(slow))
	for _, c := range slow {
		go func() {
			msg := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
			for i := 0; i < len(msg); i++ {
				if _, err := c.Write([]byte{msg[i]}); err != nil {
					closed <- i
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			closed <- -1
		}()
	}
	// Oversized heads get 431.
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 8000))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "HTTP/1.1 431") {
			t.Fatalf("oversized head: %q", line)
		}
	}
	for range slow {
		if i := <-closed; i < 0 {
			t.Fatal("a slowloris client sent its whole head without being cut off")
		}
	}
	load.check(t)
}

// wsEchoMember is a member that echoes WebSocket messages, message by
// message (io.Copy would echo a large message as several frames).
func wsEchoMember(t *testing.T) *httptest.Server {
	return backendServer(t, "ws", websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			if websocket.Message.Send(c, msg) != nil {
				return
			}
		}
	}).ServeHTTP)
}

// checkEcho sends a short and a long message and wants each back whole.
func checkEcho(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	for _, msg := range []string{"hello", strings.Repeat("z", 100000)} {
		if err := websocket.Message.Send(conn, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(conn, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
}

func TestWebSocketThroughProxy(t *testing.T) {
	ws := wsEchoMember(t)
	b, addr := startBalancer(t, Config{})
	b.SetMembers([]Member{memberOf(t, "ws", hostOf(ws))})
	conn, err := websocket.Dial("ws://"+addr+"/echo", "", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkEcho(t, conn)
}

func TestStickyCookie(t *testing.T) {
	a, bb := backendServer(t, "a", nil), backendServer(t, "b", nil)
	b, addr := startBalancer(t, Config{StickyCookie: "PICTLSRV", Policy: RoundRobin})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(a)), memberOf(t, "b", hostOf(bb))})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != "PICTLSRV" || cookies[0].Value != string(first) {
		t.Fatalf("sticky cookie: %v (served by %s)", cookies, first)
	}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.AddCookie(&http.Cookie{Name: "other", Value: "x"})
		req.AddCookie(cookies[0])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != string(first) {
			t.Fatalf("request %d with cookie %s went to %s", i, cookies[0].Value, body)
		}
		if len(resp.Cookies()) != 0 {
			t.Fatal("cookie set again though the request had it")
		}
	}
}

func TestWeightsAndRoundRobin(t *testing.T) {
	a, bb := backendServer(t, "a", nil), backendServer(t, "b", nil)
	b, addr := startBalancer(t, Config{Policy: RoundRobin})
	ma := memberOf(t, "a", hostOf(a))
	ma.Weight = 3
	b.SetMembers([]Member{ma, memberOf(t, "b", hostOf(bb))})
	count := map[string]int{}
	for i := 0; i < 40; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		count[string(body)]++
	}
	if count["a"] != 30 || count["b"] != 10 {
		t.Fatalf("weights 3:1 over 40 requests gave %v", count)
	}
}

func TestTCPMode(t *testing.T) {
	ln := echoListener(t)
	b, addr := startBalancer(t, Config{Mode: ModeTCP})
	b.SetMembers([]Member{memberOf(t, "dead", closedPort(t)), memberOf(t, "echo", ln.Addr().String())})
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("ping", 50000)
		go func() { io.WriteString(c, msg); c.(*net.TCPConn).CloseWrite() }()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != msg {
			t.Fatalf("echo through L4: %d bytes, err %v", len(got), err)
		}
	}
}

func TestMetricsPerMemberAndCode(t *testing.T) {
	srv := backendServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
		}
	})
	reg := prometheus.NewRegistry()
	b, addr := startBalancer(t, Config{Registry: reg})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})
	for _, p := range []string{"/", "/", "/missing"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pictl_balancer_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["member"]+"/"+labels["code"]] = m.GetCounter().GetValue()
		}
	}
	if got["a/200"] != 2 || got["a/404"] != 1 {
		t.Fatalf("requests_total: %v", got)
	}
	st := memberStatus(b, "a")
	if st.Requests != 3 || st.P50 == 0 || st.P99 < st.P50 {
		t.Fatalf("status: %+v", st)
	}
}
