package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Parse errors. errHeaderTooLarge maps to 431, the others to 400.
var (
	errHeaderTooLarge = errors.New("request header too large")
	errBadRequest     = errors.New("malformed request")
)

// parseError says what was wrong, for the debug log; the client gets a
// bare status line either way.
type parseError struct {
	base error
	why  string
}

func (e *parseError) Error() string { return e.base.Error() + ": " + e.why }
func (e *parseError) Unwrap() error { return e.base }

func bad(why string) error { return &parseError{base: errBadRequest, why: why} }

// field is one header line, both parts slices of the owning head's buffer.
type field struct {
	name, value []byte
}

// head is a parsed request or response head. Every slice points into buf,
// which is reused from request to request: a steady keep-alive connection
// parses without allocating.
type head struct {
	buf    []byte
	fields []field

	// Request line (requests) or status line (responses).
	line           []byte
	method, target []byte
	status         int
	reason         []byte
	minor          int // HTTP/1.minor

	host           []byte
	contentLength  int64 // -1: none given
	chunked        bool
	connClose      bool // Connection: close
	connKeepAlive  bool // Connection: keep-alive (matters for HTTP/1.0)
	connUpgrade    bool // Connection: upgrade
	upgrade        []byte
	expectContinue bool
	// Connection tokens other than close/keep-alive/upgrade: header names
	// the sender marked hop-by-hop.
	connTokens [][]byte
}

func (h *head) reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.line, h.method, h.target, h.reason, h.host, h.upgrade = nil, nil, nil, nil, nil, nil
	h.status, h.minor = 0, 0
	h.contentLength = -1
	h.chunked, h.connClose, h.connKeepAlive, h.connUpgrade, h.expectContinue = false, false, false, false, false
	h.connTokens = h.connTokens[:0]
}

// keepAlive reports whether the sender of this head expects the connection
// to stay open after the message.
func (h *head) keepAlive() bool {
	if h.connClose {
		return false
	}
	return h.minor >= 1 || h.connKeepAlive
}

// readBlock reads header lines up to and including the empty line into
// h.buf. Every line must end in CRLF; a bare LF, a lone CR, or more than
// limit bytes is refused. An empty line before the start line is refused
// too (RFC 9112 2.2 allows ignoring it; net/http does not).
func (h *head) readBlock(br *bufio.Reader, limit int) error {
	first := true
	for {
		start := len(h.buf)
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(h.buf)+len(line) > limit {
				return errHeaderTooLarge
			}
			h.buf = append(h.buf, line...)
			line, err = br.ReadSlice('\n')
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(h.buf) == 0 && len(line) == 0 && first {
				return io.EOF
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if len(h.buf)+len(line) > limit {
			return errHeaderTooLarge
		}
		h.buf = append(h.buf, line...)
		l := h.buf[start:]
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return bad("line not terminated by CRLF")
		}
		if len(l) == 2 {
			if first {
				return bad("empty start line")
			}
			return nil
		}
		first = false
	}
}

// lines calls fn for each line of h.buf without its CRLF, stopping at the
// empty line.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	return b[:i-1], b[i+1:]
}

// parseRequest reads and validates one request head. It accepts a strict
// subset of what net/http.ReadRequest accepts (FuzzParseRequest checks
// that): origin-form targets (or "*" for OPTIONS), HTTP/1.0 and 1.1 only,
// exactly one Host for 1.1, no obs-fold, no Content-Length together with
// Transfer-Encoding, no duplicate Content-Length, chunked as the only
// transfer coding.
func (h *head) parseRequest(br *bufio.Reader, limit int) error {
	h.reset()
	if err := h.readBlock(br, limit); err != nil {
		return err
	}
	line, rest := nextLine(h.buf)
	h.line = line
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return bad("request line")
	}
	h.method = line[:sp1]
	for _, c := range h.method {
		if !isTokenChar(c) {
			return bad("method")
		}
	}
	line = line[sp1+1:]
	sp2 := bytes.IndexByte(line, ' ')
	if sp2 <= 0 {
		return bad("request line")
	}
	h.target = line[:sp2]
	minor, ok := parseVersion(line[sp2+1:])
	if !ok {
		return bad("version")
	}
	h.minor = minor
	if string(h.method) == "CONNECT" {
		return bad("CONNECT")
	}
	if !validTarget(h.target, string(h.method) == "OPTIONS") {
		return bad("request target")
	}
	hosts := 0
	for len(rest) > 2 {
		line, rest = nextLine(rest)
		name, value, err := splitField(line)
		if err != nil {
			return err
		}
		switch {
		case equalFold(name, "host"):
			hosts++
			if hosts > 1 || !validHost(value) {
				return bad("host")
			}
			h.host = value
		case equalFold(name, "content-length"):
			if h.contentLength >= 0 {
				return bad("duplicate content-length")
			}
			n, ok := parseLength(value)
			if !ok {
				return bad("content-length")
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			if h.chunked || !equalFold(value, "chunked") {
				return bad("transfer-encoding")
			}
			h.chunked = true
		case equalFold(name, "connection"):
			h.parseConnection(value)
		case equalFold(name, "upgrade"):
			h.upgrade = value
		case equalFold(name, "expect"):
			if !equalFold(value, "100-continue") {
				return bad("expect")
			}
			h.expectContinue = true
		}
		h.fields = append(h.fields, field{name: name, value: value})
	}
	if h.chunked && h.contentLength >= 0 {
		return bad("content-length with transfer-encoding")
	}
	if h.chunked && h.minor == 0 {
		return bad("chunked in HTTP/1.0")
	}
	if h.minor == 1 && hosts == 0 {
		return bad("missing host")
	}
	return nil
}

// parseResponse reads a member's response head. Members are ours, but a
// broken one must not break the client: the same CRLF and framing rules
// apply.
func (h *head) parseResponse(br *bufio.Reader, limit int) error {
	h.reset()
	if err := h.readBlock(br, limit); err != nil {
		return err
	}
	line, rest := nextLine(h.buf)
	h.line = line
	if len(line) < 12 || line[8] != ' ' {
		return bad("status line")
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return bad("response version")
	}
	h.minor = minor
	s := line[9:12]
	if s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' {
		return bad("status code")
	}
	h.status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	if len(line) > 12 {
		if line[12] != ' ' {
			return bad("status line")
		}
		h.reason = line[13:]
	}
	for len(rest) > 2 {
		line, rest = nextLine(rest)
		name, value, err := splitField(line)
		if err != nil {
			return err
		}
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || (h.contentLength >= 0 && n != h.contentLength) {
				return bad("response content-length")
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			if !equalFold(value, "chunked") {
				return bad("response transfer-encoding")
			}
			h.chunked = true
		case equalFold(name, "connection"):
			h.parseConnection(value)
		case equalFold(name, "upgrade"):
			h.upgrade = value
		}
		h.fields = append(h.fields, field{name: name, value: value})
	}
	if h.chunked {
		h.contentLength = -1
	}
	return nil
}

func (h *head) parseConnection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			h.connClose = true
		case equalFold(tok, "keep-alive"):
			h.connKeepAlive = true
		case equalFold(tok, "upgrade"):
			h.connUpgrade = true
		default:
			h.connTokens = append(h.connTokens, tok)
		}
	}
}

// splitField splits "Name: value". No whitespace before the colon, no
// obs-fold (a line starting with whitespace), value bytes are VCHAR, SP,
// HTAB or obs-text.
func splitField(line []byte) (name, value []byte, err error) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, bad("header line")
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, bad(fmt.Sprintf("header name %q", name))
		}
	}
	value = trimOWS(line[colon+1:])
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, bad("header value")
		}
	}
	return name, value, nil
}

func parseVersion(v []byte) (minor int, ok bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." {
		return 0, false
	}
	switch v[7] {
	case '0':
		return 0, true
	case '1':
		return 1, true
	}
	return 0, false
}

// parseLength parses 1*DIGIT, bounded so it cannot overflow.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with the lower-case ASCII string s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validTarget accepts origin-form ("/" path ["?" query]) with RFC 3986
// characters and well-formed percent escapes, or "*" for OPTIONS.
func validTarget(t []byte, options bool) bool {
	if len(t) == 1 && t[0] == '*' {
		return options
	}
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		case c == '%':
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
			continue
		}
		switch c {
		case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/', '?':
			continue
		}
		return false
	}
	return true
}

// validHost accepts reg-name or IP-literal characters with an optional port.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '-', '.', '_', ':', '[', ']':
			continue
		}
		return false
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
