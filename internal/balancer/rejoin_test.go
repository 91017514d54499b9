package balancer

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A member drained (not ready, or by Drain before a role change that did
// not happen) and then listed ready again takes requests again, and a
// later drain waits for its in-flight requests again.
func TestDrainedMemberRejoinsWhenReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health HealthCheck
	}{
		{"no checks", HealthCheck{}},
		{"http checks", HealthCheck{Interval: 10 * time.Millisecond, Rise: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := backendServer(t, "a", nil)
			b, addr := startBalancer(t, Config{Health: tc.health})
			ma := memberOf(t, "a", hostOf(a))
			b.SetMembers([]Member{ma})
			waitFor(t, "a up", func() bool { return memberStatus(b, "a").State == "up" })
			if err := b.Drain(context.Background(), "a"); err != nil {
				t.Fatal(err)
			}
			if st := memberStatus(b, "a").State; st != "draining" {
				t.Fatalf("after Drain: %s", st)
			}
			notReady := ma
			notReady.Ready = false
			b.SetMembers([]Member{notReady})
			b.SetMembers([]Member{ma})
			waitFor(t, "a up again", func() bool { return memberStatus(b, "a").State == "up" })
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "a" {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
		})
	}
}

// Kind tcp checks only that the member accepts connections: a port that
// answers HTTP with 500 is up, a closed port is not.
func TestTCPHealthCheck(t *testing.T) {
	failing := backendServer(t, "failing", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	b, _ := startBalancer(t, Config{Health: HealthCheck{Kind: CheckTCP, Interval: 10 * time.Millisecond, Rise: 1, Fall: 1}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	b.SetMembers([]Member{memberOf(t, "failing", hostOf(failing)), memberOf(t, "gone", gone)})
	waitFor(t, "failing up", func() bool { return memberStatus(b, "failing").State == "up" })
	waitFor(t, "gone up while it listens", func() bool { return memberStatus(b, "gone").State == "up" })
	ln.Close()
	waitFor(t, "gone down", func() bool { return memberStatus(b, "gone").State == "down" })
}

func TestBadHealthCheckKind(t *testing.T) {
	if _, err := New(Config{Health: HealthCheck{Kind: "udp"}}); err == nil {
		t.Fatal("kind udp accepted")
	}
}
