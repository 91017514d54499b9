package balancer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestProxyForwardsHeadersAndBodies(t *testing.T) {
	var seen http.Header
	var seenBody []byte
	srv := backendServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		seenBody, _ = io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 200000))
		default:
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Write([]byte("hello " + r.Method))
		}
	})
	b, addr := startBalancer(t, Config{})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})

	client := &http.Client{}
	tests := []struct {
		name, method, path string
		body               io.Reader
		chunkedReq         bool
		want               string
	}{
		{"get", "GET", "/", nil, false, "hello GET"},
		{"post with length", "POST", "/", strings.NewReader("payload"), false, "hello POST"},
		{"big post", "PUT", "/", bytes.NewReader(bytes.Repeat([]byte("y"), 300000)), false, "hello PUT"},
		{"chunked post", "POST", "/", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")), true, "hello POST"},
		{"chunked response", "GET", "/chunked", nil, false, "part1-part2"},
		{"big response", "GET", "/big", nil, false, strings.Repeat("x", 200000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, tc.body)
			if tc.chunkedReq {
				req.ContentLength = -1
			}
			req.Header.Set("X-Forwarded-For", "10.9.9.9")
			req.Header.Set("Connection", "X-Secret")
			req.Header.Set("X-Secret", "drop me")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tc.want {
				t.Fatalf("body %q... (%d bytes), want %d bytes", got[:min(len(got), 40)], len(got), len(tc.want))
			}
			if resp.Header.Get("Keep-Alive") != "" {
				t.Error("Keep-Alive response header was forwarded")
			}
			if g := seen.Get("X-Forwarded-For"); g != "10.9.9.9, 127.0.0.1" {
				t.Errorf("X-Forwarded-For %q", g)
			}
			if seen.Get("X-Forwarded-Host") != addr || seen.Get("X-Forwarded-Proto") != "http" || seen.Get("Via") != "1.1 pictl" {
				t.Errorf("forwarding headers: %v", seen)
			}
			if seen.Get("X-Secret") != "" {
				t.Error("header named in Connection was forwarded")
			}
			if tc.body != nil && len(seenBody) == 0 {
				t.Error("member got no body")
			}
		})
	}
}

func TestProxyRefusesMalformedRequests(t *testing.T) {
	srv := backendServer(t, "a", nil)
	b, addr := startBalancer(t, Config{MaxHeaderBytes: 1024})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})
	tests := []struct {
		name, raw, status string
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400"},
		{"duplicate cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "400"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400"},
		{"bare lf", "GET / HTTP/1.1\nHost: x\n\n", "400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"oversized", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n", "431"},
		{"fine", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200"},
		{"http/1.0", "GET / HTTP/1.0\r\n\r\n", "200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.raw)
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(line, "HTTP/1.1 "+tc.status) {
				t.Fatalf("got %q, want %s", line, tc.status)
			}
		})
	}
}

func TestNoMemberIsFast503(t *testing.T) {
	_, addr := startBalancer(t, Config{})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

var _ = fmt.Sprint

func TestPerClientConnectionLimit(t *testing.T) {
	srv := backendServer(t, "a", nil)
	b, addr := startBalancer(t, Config{MaxConnsPerClient: 2})
	b.SetMembers([]Member{memberOf(t, "a", hostOf(srv))})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A request answered proves the connection was accepted and counted.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("connection %d: %q", i, line)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 503") {
		t.Fatalf("third connection from one client: %q", line)
	}
	held[0].Close()
	waitFor(t, "a slot freed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "HTTP/1.1 200")
	})
}
