package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// balancerBackend is pageBackend with a balancer running.
type balancerBackend struct {
	*fakeBackend
	st Balancer
}

func (b balancerBackend) Balancer(context.Context) (Balancer, bool) { return b.st, true }

func testBalancer() Balancer {
	return Balancer{
		Listen: "[::]:80", Role: "web", Mode: "http", Policy: "least-conn", StickyCookie: "PICTLNODE",
		Check: "http GET / → 200 every 2s",
		Members: []BalancerMember{
			{Node: "pi3", Address: "10.99.0.13:8000", Weight: 1, State: "up", InFlight: 2, Requests: 1234, P50: 0.000412, P99: 0.0031},
			{Node: "<b>pi4</b>", Address: "10.99.0.14:8000", Weight: 2, State: "down", Errors: 7},
		},
	}
}

// GET /v1/balancer: the members as JSON on the socket, the token on TCP
// like every route, 404 when no balancer runs.
func TestBalancerRoute(t *testing.T) {
	srv := NewServer("/nonexistent.sock", balancerBackend{pageBackend(), testBalancer()}, nil)
	resp := get(t, srv.Handler(), "/v1/balancer", nil)
	var got Balancer
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/balancer: %s %v", resp.Status, err)
	}
	if len(got.Members) != 2 || got.Members[0].Requests != 1234 || got.Members[1].State != "down" || got.Policy != "least-conn" {
		t.Errorf("decoded %+v", got)
	}

	if err := srv.ListenTCP("127.0.0.1:0", testToken); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		name string
		mod  func(*http.Request)
		want int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"bearer", bearer(testToken), http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/balancer", nil)
		if tc.mod != nil {
			tc.mod(req)
		}
		srv.TCPHandler().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("TCP %s: %d, want %d", tc.name, rec.Code, tc.want)
		}
	}

	none := NewServer("/nonexistent.sock", pageBackend(), nil)
	if resp := get(t, none.Handler(), "/v1/balancer", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a balancer: %s", resp.Status)
	}
}

func TestStatusPageBalancer(t *testing.T) {
	srv := NewServer("/nonexistent.sock", balancerBackend{pageBackend(), testBalancer()}, nil)
	page := body(t, get(t, srv.Handler(), "/", nil))
	for _, want := range []string{
		"Balancer (2 members)", "[::]:80", "sticky cookie PICTLNODE", "http GET / → 200 every 2s",
		"<b>pi3</b>", "10.99.0.13:8000", "1234", "412µs", "3.1ms", `class="bad">down`,
		"&lt;b&gt;pi4&lt;/b&gt;", `href="/v1/balancer"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	plain := body(t, get(t, NewServer("/nonexistent.sock", pageBackend(), nil).Handler(), "/", nil))
	if strings.Contains(plain, "Balancer") {
		t.Error("balancer section without a balancer")
	}
}
