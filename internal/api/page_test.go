package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// pageBackend is a controller with two nodes, one discovered client and a
// reload error that tries to inject markup.
func pageBackend() *fakeBackend {
	now := time.Now()
	return &fakeBackend{
		status: Status{
			Version: "test", Config: "/etc/pictl/cluster.yaml", Generation: 3,
			ReloadError: `cluster.yaml:3:1: unknown key "<script>alert(1)</script>"`,
			Components: []ComponentStatus{
				{Name: "dhcpd", State: "running"}, {Name: "tftpd", State: "running"},
				{Name: "nfsd", State: "failed", Error: "listen :2049: address in use"},
				{Name: "api", State: "running", Detail: "unix /run/pictl/pictl.sock, tcp [::]:8080 (token)"},
			},
		},
		nodes: []Node{
			{Name: "pi3", MACs: []string{"dc:a6:32:01:36:c2"}, Image: "rpi-os", Role: "web", IP: "10.99.0.13", Netboot: true,
				Runtime: &NodeRuntime{Address: "10.99.0.13", LeaseIP: "10.99.0.13", LeaseExpires: now.Add(time.Hour),
					BootStage: "kernel", BootStageAt: now.Add(-30 * time.Second), LastSeen: now.Add(-2 * time.Second)}},
			{Name: "pi4", MACs: []string{"dc:a6:32:01:36:c4", "dc:a6:32:01:36:c5"}, Netboot: false, Runtime: &NodeRuntime{}},
		},
		discovered: []Discovered{{MAC: "b8:27:eb:00:00:01", Serial: "9ffefdef", Model: "pi3b", Interface: "br0",
			FirstSeen: now.Add(-time.Minute), LastSeen: now}},
	}
}

func get(t *testing.T, h http.Handler, target string, mod func(*http.Request)) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStatusPage(t *testing.T) {
	srv := NewServer("/nonexistent.sock", pageBackend(), nil)
	resp := get(t, srv.Handler(), "/", nil)
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"<b>pi3</b>", "dc:a6:32:01:36:c2", "10.99.0.13", "web", "rpi-os", "kernel", "30s ago", "2s ago", "for 1h0m",
		"<b>pi4</b>", "dc:a6:32:01:36:c4<br>dc:a6:32:01:36:c5", "(netboot off)", "never",
		"b8:27:eb:00:00:01", "9ffefdef", "pi3b",
		"dhcpd", "address in use", "tcp [::]:8080",
		`href="/metrics"`, `href="/v1/nodes"`, `href="/v1/status"`, `href="/v1/discovered"`,
		`http-equiv="refresh" content="5"`,
		"&lt;script&gt;alert(1)&lt;/script&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("status page carries an unescaped <script>")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// Only "/" is the page; other paths are not found rather than the page.
	if r := get(t, srv.Handler(), "/nodes", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nodes: %s", r.Status)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1499 * time.Millisecond: "1s", 42 * time.Second: "42s", 12*time.Minute + 5*time.Second: "12m5s",
		3*time.Hour + 12*time.Minute + 30*time.Second: "3h12m", 52 * time.Hour: "2d4h", -5 * time.Second: "-5s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTokenAuth(t *testing.T) {
	srv := NewServer("/nonexistent.sock", pageBackend(), nil)
	auth := newTokenAuth(testToken, srv.Handler())
	good := auth.session
	for _, tc := range []struct {
		name       string
		target     string
		mod        func(*http.Request)
		want       int
		location   string
		wantCookie bool
	}{
		{name: "no token", target: "/", want: 401},
		{name: "no token, api", target: "/v1/nodes", want: 401},
		{name: "bearer", target: "/v1/nodes", mod: bearer(testToken), want: 200},
		{name: "bearer page", target: "/", mod: bearer(testToken), want: 200},
		{name: "bearer, scheme in lower case", target: "/", mod: func(r *http.Request) { r.Header.Set("Authorization", "bearer "+testToken) }, want: 200},
		{name: "basic auth", target: "/", mod: func(r *http.Request) { r.SetBasicAuth("x", testToken) }, want: 401},
		{name: "wrong bearer", target: "/v1/nodes", mod: bearer(testToken[:63] + "0"), want: 401},
		{name: "short bearer", target: "/v1/nodes", mod: bearer("0"), want: 401},
		{name: "wrong bearer beats good cookie", target: "/", mod: both(bearer("x"), cookie(good)), want: 401},
		{name: "query token", target: "/?token=" + testToken, want: 303, location: "/", wantCookie: true},
		{name: "query token keeps other params", target: "/v1/nodes?a=1&token=" + testToken, want: 303, location: "/v1/nodes?a=1", wantCookie: true},
		{name: "query token, no open redirect", target: "//evil.example/?token=" + testToken, want: 303, location: "/", wantCookie: true},
		{name: "wrong query token", target: "/?token=nope", want: 401},
		{name: "cookie", target: "/", mod: cookie(good), want: 200},
		{name: "cookie, api", target: "/v1/status", mod: cookie(good), want: 200},
		{name: "token as cookie", target: "/", mod: cookie(testToken), want: 401},
		{name: "wrong cookie", target: "/", mod: cookie("00"), want: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, auth, tc.target, tc.mod)
			text := body(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s: %s, want %d\n%s", tc.target, resp.Status, tc.want, text)
			}
			if tc.want == 401 {
				if !strings.Contains(text, "pictl api token") || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 does not say how to get the token: %q", text)
				}
				if strings.Contains(text, testToken) {
					t.Error("401 reveals the token")
				}
			}
			if loc := resp.Header.Get("Location"); loc != tc.location {
				t.Errorf("Location %q, want %q", loc, tc.location)
			}
			cookies := resp.Cookies()
			if !tc.wantCookie {
				if len(cookies) != 0 {
					t.Errorf("unexpected cookies %v", cookies)
				}
				return
			}
			if len(cookies) != 1 {
				t.Fatalf("cookies: %v", cookies)
			}
			c := cookies[0]
			if c.Name != sessionCookie || c.Value != good || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Errorf("cookie %+v", c)
			}
			if c.Value == testToken {
				t.Error("cookie carries the bearer token itself")
			}
		})
	}
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func cookie(v string) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v}) }
}

func both(a, b func(*http.Request)) func(*http.Request) {
	return func(r *http.Request) { a(r); b(r) }
}

// Over real sockets: the TCP port wants the token (a browser signs in once
// with ?token= and then uses its cookie), the unix socket does not.
func TestServeTCPAndSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "api.sock")
	srv := NewServer(socket, pageBackend(), nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenTCP("127.0.0.1:0", ""); err == nil {
		t.Fatal("ListenTCP accepted an empty token")
	}
	if err := srv.ListenTCP("127.0.0.1:0", testToken); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(socket); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	}()
	base := "http://" + srv.TCPAddr().String()

	resp, err := http.Get(base + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("TCP without token: %s", resp.Status)
	}

	req, _ := http.NewRequest(http.MethodGet, base+"/v1/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("TCP with bearer: %s", resp.Status)
	}

	// A browser: cookie jar, follows the redirect.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err = browser.Get(base + "/?token=" + testToken)
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RawQuery != "" || !strings.Contains(page, "<b>pi3</b>") {
		t.Errorf("browser sign-in: %s at %s", resp.Status, resp.Request.URL)
	}
	resp, err = browser.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound { // authenticated; this server has no /metrics route
		t.Errorf("browser with cookie: %s", resp.Status)
	}

	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	resp, err = unix.Get("http://pictl/")
	if err != nil {
		t.Fatal(err)
	}
	page = body(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<b>pi3</b>") {
		t.Errorf("unix socket without token: %s", resp.Status)
	}
}

// Issue 18 row 4: thousands of discovered clients do not make the status
// page megabytes long; it shows a page at a time, most recently seen first.
func TestStatusPagePaginated(t *testing.T) {
	b := pageBackend()
	now := time.Now()
	b.discovered = nil
	for i := 0; i < 5000; i++ {
		b.discovered = append(b.discovered, Discovered{MAC: fmt.Sprintf("02:66:00:00:%02x:%02x", i>>8, i&0xff),
			Model: "pxe", LastSeen: now.Add(-time.Duration(i) * time.Second)})
	}
	srv := NewServer("/nonexistent.sock", b, nil)
	page := body(t, get(t, srv.Handler(), "/", nil))
	if len(page) > 64<<10 {
		t.Errorf("page 1 is %d bytes", len(page))
	}
	for _, want := range []string{"Discovered clients (5000)", "02:66:00:00:00:00", "page 1 of 100", `href="/?discovered_page=2"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page 1 lacks %q", want)
		}
	}
	if strings.Contains(page, "02:66:00:00:00:32") { // the 51st
		t.Error("page 1 shows more than one page of rows")
	}
	last := body(t, get(t, srv.Handler(), "/?discovered_page=100&nodes_page=1", nil))
	for _, want := range []string{"page 100 of 100", "02:66:00:00:13:87", "rows 4951–5000", `href="/?discovered_page=99&amp;nodes_page=1"`} {
		if !strings.Contains(last, want) {
			t.Errorf("page 100 lacks %q", want)
		}
	}
	// Out of range and junk page numbers land on a real page.
	if p := body(t, get(t, srv.Handler(), "/?discovered_page=9999", nil)); !strings.Contains(p, "page 100 of 100") {
		t.Error("page 9999 is not the last page")
	}
	if p := body(t, get(t, srv.Handler(), "/?discovered_page=x", nil)); !strings.Contains(p, "page 1 of 100") {
		t.Error("page x is not the first page")
	}
}
