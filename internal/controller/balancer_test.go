package controller

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/roles"
)

// fakeMembership is the roles component as the balancer sees it.
type fakeMembership struct {
	mu      sync.Mutex
	members map[string][]Member
	changed chan struct{}
}

func newFakeMembership() *fakeMembership {
	return &fakeMembership{members: map[string][]Member{}, changed: make(chan struct{})}
}

func (f *fakeMembership) Members(role string) []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Member(nil), f.members[role]...)
}

func (f *fakeMembership) Changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeMembership) set(role string, ms ...Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members[role] = ms
	close(f.changed)
	f.changed = make(chan struct{})
}

// webServer is a member answering with its name.
func webServer(t *testing.T, name string, hits *sync.Map) Member {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil && r.Header.Get("User-Agent") != "pictl-balancer-check" {
			n, _ := hits.LoadOrStore(name, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
		w.Write([]byte(name))
	}))
	t.Cleanup(s.Close)
	ap := netip.MustParseAddrPort(s.Listener.Addr().String())
	return Member{Node: name, Role: "web", Addr: ap.Addr(), Port: int(ap.Port()), State: api.RoleActive}
}

func balancerCluster(t *testing.T, port int, extra string) *cluster.Cluster {
	t.Helper()
	y := `
controller: {interface: br0, address: 10.99.0.1/24}
dhcp: {range: 10.99.0.100-10.99.0.199}
ports: {balancer: ` + strconv.Itoa(port) + `}
nodes:
  a: {mac: 52:54:00:00:00:01, role: web}
  b: {mac: 52:54:00:00:00:02, role: web}
  c: {mac: 52:54:00:00:00:03, role: web}
` + extra
	cl, err := cluster.Load("cluster.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// startBalancerComponent runs the component on loopback with fmem as the
// membership and a fast http check, as the web role would give.
func startBalancerComponent(t *testing.T, cl *cluster.Cluster, fmem *fakeMembership) (*balancerComponent, *atomic.Pointer[cluster.Cluster]) {
	t.Helper()
	var cur atomic.Pointer[cluster.Cluster]
	cur.Store(cl)
	bc := &balancerComponent{
		host:         "127.0.0.1",
		log:          slog.New(slog.DiscardHandler),
		cluster:      cur.Load,
		membership:   func() (Membership, bool) { return fmem, true },
		membersEvery: time.Hour, // only notices move members here
		reloaded:     make(chan struct{}, 1),
		roleCheck: func(role string) (roles.HealthCheck, bool) {
			return roles.HealthCheck{Kind: "http", Path: "/", Interval: 10 * time.Millisecond, Timeout: time.Second}, role == "web"
		},
	}
	if err := bc.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return bc, &cur
}

type getLoad struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       func()
}

// startGets runs keep-alive GET loops on url until stop.
func startGets(url func() string, workers int) *getLoad {
	l := &getLoad{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				resp, err := client.Get(url())
				if err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
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

func (l *getLoad) waitMore(t *testing.T, what string, n int64) {
	t.Helper()
	before := l.ok.Load()
	waitUntil(t, what, func() bool { return l.ok.Load() >= before+n })
}

func (l *getLoad) check(t *testing.T) {
	t.Helper()
	l.stop()
	if l.failed.Load() != 0 {
		t.Fatalf("%d of %d GETs failed (last: %v)", l.failed.Load(), l.failed.Load()+l.ok.Load(), l.lastErr.Load())
	}
	t.Logf("%d GETs, none failed", l.ok.Load())
}

// waitUntil polls cond, bounded by a generous deadline (no timing claim).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func memberState(bc *balancerComponent, node string) string {
	for _, m := range bc.Balancer().Members {
		if m.Node == node {
			return m.State
		}
	}
	return ""
}

func hitsOf(hits *sync.Map, name string) int64 {
	n, ok := hits.Load(name)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// Members follow the membership and the agents' word, drains come before
// a role change, and no GET fails through any of it.
func TestBalancerFollowsMembership(t *testing.T) {
	var hits sync.Map
	a, b, c := webServer(t, "a", &hits), webServer(t, "b", &hits), webServer(t, "c", &hits)
	fmem := newFakeMembership()
	fmem.set("web", a)
	port := freePort(t)
	bc, _ := startBalancerComponent(t, balancerCluster(t, port, ""), fmem)
	waitUntil(t, "a up", func() bool { return memberState(bc, "a") == "up" })
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	load := startGets(func() string { return url }, 4)

	// b joins, c is a web node whose agent has not reported yet.
	cNotSeen := c
	cNotSeen.State = api.RoleNotSeen
	fmem.set("web", a, b, cNotSeen)
	waitUntil(t, "b up", func() bool { return memberState(bc, "b") == "up" })
	load.waitMore(t, "GETs with a and b", 200)
	if got := memberState(bc, "c"); got != "role not seen" {
		t.Errorf("c before its agent reports: %q, want role not seen (not in rotation)", got)
	}
	if hitsOf(&hits, "c") != 0 {
		t.Errorf("c got %d requests before its role was active", hitsOf(&hits, "c"))
	}
	fmem.set("web", a, b, c)
	waitUntil(t, "c up", func() bool { return memberState(bc, "c") == "up" })
	load.waitMore(t, "GETs with a, b and c", 200)

	// a is switching roles: the roles component drains it first.
	if err := bc.Drain(context.Background(), "web", "a", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	before := hitsOf(&hits, "a")
	load.waitMore(t, "GETs after a drained", 200)
	if after := hitsOf(&hits, "a"); after != before {
		t.Errorf("a got %d requests after its drain", after-before)
	}
	aSwitching := a
	aSwitching.State = api.RoleSwitching
	fmem.set("web", aSwitching, b, c)
	fmem.set("web", b, c) // a left the role
	waitUntil(t, "a gone", func() bool { return memberState(bc, "a") == "" })
	// b's agent reports failure: out of rotation.
	bFailed := b
	bFailed.State = api.RoleFailed
	fmem.set("web", bFailed, c)
	waitUntil(t, "b out of rotation", func() bool { return memberState(bc, "b") == "role failed" })
	load.waitMore(t, "GETs with c alone", 200)
	// a drain for another role is not the balancer's business.
	if err := bc.Drain(context.Background(), "db", "c", netip.Addr{}); err != nil || memberState(bc, "c") != "up" {
		t.Errorf("drain for role db: %v, c %s", err, memberState(bc, "c"))
	}
	load.check(t)
}

// Settings edited in cluster.yaml take effect without a restart or a
// failed GET: policy, weights, sticky cookie; a port change serves the new
// port and closes the old.
func TestBalancerSettingsReload(t *testing.T) {
	var hits sync.Map
	a, b := webServer(t, "a", &hits), webServer(t, "b", &hits)
	fmem := newFakeMembership()
	fmem.set("web", a, b)
	port := freePort(t)
	bc, cur := startBalancerComponent(t, balancerCluster(t, port, ""), fmem)
	waitUntil(t, "a and b up", func() bool { return memberState(bc, "a") == "up" && memberState(bc, "b") == "up" })
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	load := startGets(func() string { return url }, 4)
	load.waitMore(t, "GETs", 200)

	reload := func(cl *cluster.Cluster) {
		cur.Store(cl)
		if err := bc.Reload(context.Background(), cl); err != nil {
			t.Fatal(err)
		}
	}
	reload(balancerCluster(t, port, "balancer: {policy: round-robin, weights: {b: 3}, sticky_cookie: PICTLNODE}\n"))
	waitUntil(t, "round-robin in force", func() bool {
		st := bc.Balancer()
		return st.Policy == "round-robin" && st.StickyCookie == "PICTLNODE" && memberState(bc, "a") == "up" && memberState(bc, "b") == "up"
	})
	for _, m := range bc.Balancer().Members {
		if want := map[string]int{"a": 1, "b": 3}[m.Node]; m.Weight != want {
			t.Errorf("%s weight %d, want %d", m.Node, m.Weight, want)
		}
	}
	a0, b0 := hitsOf(&hits, "a"), hitsOf(&hits, "b")
	load.waitMore(t, "GETs round-robin", 400)
	da, db := hitsOf(&hits, "a")-a0, hitsOf(&hits, "b")-b0
	if db < 2*da {
		t.Errorf("weights 1:3 gave a %d, b %d", da, db)
	}

	// The sticky cookie pins a client.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cookie := resp.Header.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, "PICTLNODE="+string(body)) {
		t.Fatalf("Set-Cookie %q from member %s", cookie, body)
	}
	for range 10 {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Cookie", "PICTLNODE="+string(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != string(body) {
			t.Fatalf("sticky to %s, served by %s", body, got)
		}
	}

	load.check(t)

	// A port change: the new port serves before the old one closes.
	newPort := freePort(t)
	reload(balancerCluster(t, newPort, "balancer: {policy: round-robin}\n"))
	newURL := "http://127.0.0.1:" + strconv.Itoa(newPort) + "/"
	waitUntil(t, "new port serving", func() bool {
		resp, err := http.Get(newURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitUntil(t, "old port closed", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if got := bc.Balancer().Listen; got != "127.0.0.1:"+strconv.Itoa(newPort) {
		t.Errorf("listen %s", got)
	}
}
