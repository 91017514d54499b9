package balancer

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// FuzzParseRequest checks the strict parser against net/http.ReadRequest:
// whatever it accepts, net/http must accept too and read the same method,
// target, version, Host, headers and body framing. (It may refuse more.)
// The seeds are in testdata/fuzz/FuzzParseRequest and run in every go test.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x?y=1 HTTP/1.0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\n\r\nabc",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-y\r\nX-Y: 1\r\nUpgrade: websocket\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 01\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h head
		ours := h.parseRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096), 8<<10)
		if ours != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, data)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.ProtoMinor != h.minor || req.ProtoMajor != 1 {
			t.Fatalf("request line: net/http %s %s 1.%d, ours %s %s 1.%d", req.Method, req.RequestURI, req.ProtoMinor, h.method, h.target, h.minor)
		}
		if h.host != nil && req.Host != string(h.host) {
			t.Fatalf("host: net/http %q, ours %q", req.Host, h.host)
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		if chunked != h.chunked {
			t.Fatalf("chunked: net/http %v, ours %v", chunked, h.chunked)
		}
		if !chunked {
			want := h.contentLength
			if want < 0 {
				want = 0
			}
			if req.ContentLength != want {
				t.Fatalf("content-length: net/http %d, ours %d", req.ContentLength, h.contentLength)
			}
		}
		ourHeader := http.Header{}
		for _, fl := range h.fields {
			k := textproto.CanonicalMIMEHeaderKey(string(fl.name))
			if k == "Host" {
				continue
			}
			ourHeader[k] = append(ourHeader[k], string(fl.value))
		}
		for k, v := range req.Header {
			if k == "Transfer-Encoding" || k == "Content-Length" {
				continue // net/http moves or rewrites these
			}
			if strings.Join(ourHeader[k], "\x00") != strings.Join(v, "\x00") {
				t.Fatalf("header %s: net/http %q, ours %q", k, v, ourHeader[k])
			}
		}
		for k := range ourHeader {
			if _, ok := req.Header[k]; !ok && k != "Transfer-Encoding" && k != "Content-Length" {
				t.Fatalf("header %s only in ours", k)
			}
		}
	})
}
