package balancer

import (
	"bufio"
	"errors"
)

var errChunk = errors.New("malformed chunked body")

// copyChunked relays a chunked body from src to dst as it arrives: chunk
// by chunk, flushing whenever src has nothing more buffered, so a
// streaming body is never held back. With decode the framing is removed
// (for an HTTP/1.0 client); otherwise it passes through unchanged,
// trailers included. Read errors are wrapped in readSideError. progress
// (if not nil) is called before every wait for src, to push deadlines.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, decode bool, progress func()) error {
	if progress == nil {
		progress = func() {}
	}
	for {
		progress()
		line, err := src.ReadSlice('\n')
		if err != nil {
			return readSideError{err}
		}
		size, ok := chunkSize(line)
		if !ok {
			return readSideError{errChunk}
		}
		if !decode {
			if _, err := dst.Write(line); err != nil {
				return err
			}
		}
		if size == 0 {
			break
		}
		for size > 0 {
			if src.Buffered() == 0 {
				if err := dst.Flush(); err != nil {
					return err
				}
				progress()
				if _, err := src.Peek(1); err != nil {
					return readSideError{err}
				}
			}
			p, _ := src.Peek(int(min(size, int64(src.Buffered()))))
			if _, err := dst.Write(p); err != nil {
				return err
			}
			src.Discard(len(p))
			size -= int64(len(p))
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil {
			return readSideError{err}
		}
		if string(crlf) != "\r\n" {
			return readSideError{errChunk}
		}
		if !decode {
			dst.WriteString("\r\n")
		}
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
		}
	}
	// Trailer section up to the empty line.
	for {
		progress()
		line, err := src.ReadSlice('\n')
		if err != nil {
			return readSideError{err}
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return readSideError{errChunk}
		}
		if !decode {
			if _, err := dst.Write(line); err != nil {
				return err
			}
		}
		if len(line) == 2 {
			return dst.Flush()
		}
	}
}

// chunkSize parses "HEX[;ext]\r\n".
func chunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	line = line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(line) && isHex(line[i]); i++ {
		if i >= 15 {
			return 0, false
		}
		c := line[i]
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		n = n<<4 | int64(c)
	}
	if i == 0 {
		return 0, false
	}
	rest := trimOWS(line[i:])
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}
