package cluster

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// MaxFileSize caps cluster.yaml and role files: a real one is a few KiB,
// and a path pointing at /dev/zero or a huge file must fail at once rather
// than eat the controller's memory.
const MaxFileSize = 4 << 20

// ReadFile reads a configuration file of at most MaxFileSize bytes; it
// refuses anything but a regular file (after symlinks), so a device or a
// FIFO is never read.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s is %d bytes, over the %d MiB limit of a configuration file", path, fi.Size(), MaxFileSize>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s grew over the %d MiB limit of a configuration file while read", path, MaxFileSize>>20)
	}
	return data, nil
}

// textProblem finds the first byte YAML cannot hold as text (a NUL, or an
// invalid UTF-8 sequence) and positions it: line and column (1-based,
// column counted in characters), so the error names the real place
// rather than yaml.v3's 1:1.
func textProblem(filename string, data []byte) *Error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return &Error{File: filename, Line: line, Column: col,
				Msg: fmt.Sprintf("invalid UTF-8 byte 0x%02x", data[i]),
				Fix: "save the file as UTF-8 text"}
		case r == 0:
			return &Error{File: filename, Line: line, Column: col,
				Msg: "NUL byte in the file", Fix: "remove it: a YAML file holds text only"}
		case r == '\n':
			line, col = line+1, 1
		default:
			col++
		}
		i += size
	}
	return nil
}
