package balancer

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// A client that stops sending its request body, or a member that stops
// sending its response body, is cut after BodyIdleTimeout, and the member
// slot is freed; a body that keeps moving is not cut however long it takes.
func TestBodyIdleTimeouts(t *testing.T) {
	memberErr := make(chan error, 4)
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	srv := backendServer(t, "m", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			_, err := io.Copy(io.Discard, r.Body)
			memberErr <- err
			if err == nil {
				w.Write([]byte("got it"))
			}
		case "/stuck":
			w.Header().Set("Content-Length", "1000000")
			w.Write([]byte(strings.Repeat("x", 1000)))
			w.(http.Flusher).Flush()
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		case "/trickle":
			// 20 pieces, each well inside the idle timeout, the whole
			// well beyond it.
			w.Header().Set("Content-Length", "20")
			for range 20 {
				w.Write([]byte("y"))
				w.(http.Flusher).Flush()
				time.Sleep(40 * time.Millisecond)
			}
		}
	})
	const idle = 300 * time.Millisecond
	b, addr := startBalancer(t, Config{BodyIdleTimeout: idle})
	b.SetMembers([]Member{memberOf(t, "m", hostOf(srv))})

	// Request body: 10 of 100 bytes, then nothing.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
	select {
	case err := <-memberErr:
		if err == nil {
			t.Fatal("member read the whole body")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled request body was never cut")
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("client connection after its stalled body: %v", err)
	}
	waitFor(t, "slot freed", func() bool { return memberStatus(b, "m").InFlight == 0 })

	// Response body: 1000 of 1000000 bytes, then nothing.
	resp, err := http.Get("http://" + addr + "/stuck")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil || n >= 1000000 {
		t.Fatalf("stalled response body: %d bytes, %v", n, err)
	}
	waitFor(t, "slot freed", func() bool { return memberStatus(b, "m").InFlight == 0 })

	// A slow body that keeps moving, and the connection stays usable.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for range 2 {
		resp, err := client.Get("http://" + addr + "/trickle")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != strings.Repeat("y", 20) {
			t.Fatalf("trickled body %q, %v", body, err)
		}
	}
}

// A WebSocket quiet both ways is closed after TunnelIdleTimeout; one where
// only the member talks stays open.
func TestTunnelIdleTimeout(t *testing.T) {
	ws := backendServer(t, "ws", websocket.Handler(func(c *websocket.Conn) {
		if c.Request().URL.Path == "/quiet" {
			io.Copy(io.Discard, c)
			return
		}
		for i := 0; ; i++ {
			if websocket.Message.Send(c, "tick") != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}).ServeHTTP)
	const idle = 400 * time.Millisecond
	b, addr := startBalancer(t, Config{TunnelIdleTimeout: idle})
	b.SetMembers([]Member{memberOf(t, "ws", hostOf(ws))})

	quiet, err := websocket.Dial("ws://"+addr+"/quiet", "", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	quiet.SetReadDeadline(time.Now().Add(30 * time.Second))
	var msg string
	if err := websocket.Message.Receive(quiet, &msg); err == nil {
		t.Fatalf("quiet tunnel got %q", msg)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("quiet tunnel never closed")
	}

	// Only the member talks, for many idle timeouts: the client's side is
	// quiet throughout, the tunnel is not.
	talk, err := websocket.Dial("ws://"+addr+"/talk", "", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer talk.Close()
	deadline := time.Now().Add(4 * idle)
	ticks := 0
	for time.Now().Before(deadline) {
		if err := websocket.Message.Receive(talk, &msg); err != nil {
			t.Fatalf("one-way tunnel closed after %d messages: %v", ticks, err)
		}
		ticks++
	}
	t.Logf("%d messages over %v with the client silent", ticks, 4*idle)
}

// The L4 mode closes a session quiet both ways too.
func TestTCPModeIdle(t *testing.T) {
	ln := echoListener(t)
	b, addr := startBalancer(t, Config{Mode: ModeTCP, TunnelIdleTimeout: 300 * time.Millisecond})
	b.SetMembers([]Member{memberOf(t, "echo", ln.Addr().String())})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping\n")
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("data from an idle session")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle tcp session never closed")
	}
	waitFor(t, "session ended", func() bool { return memberStatus(b, "echo").InFlight == 0 })
}
