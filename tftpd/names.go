package tftpd

import (
	"net"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest request name accepted, in bytes. Boot file names
// are short ("<serial>/overlays/vc4-kms-v3d-pi4.dtbo" is 40); a request near
// the 512-byte datagram limit is not a boot client.
const MaxNameLen = 255

// NameError says why a request name was refused. Its text is safe to log;
// clients only ever see "invalid file name".
type NameError struct{ Reason string }

func (e *NameError) Error() string { return "invalid file name: " + e.Reason }

// CleanName checks a requested name and returns it in canonical form
// (slash-separated, relative, no "." or empty elements). It refuses empty and
// over-long names, NUL and other control bytes, invalid UTF-8, backslashes,
// absolute paths and any ".." element (even one that would stay inside the
// tree: boot clients never send one). Confinement does not rest on this
// check alone: files are opened through os.Root as well.
func CleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", &NameError{"empty"}
	case len(name) > MaxNameLen:
		return "", &NameError{"too long"}
	case !utf8.ValidString(name):
		return "", &NameError{"not UTF-8"}
	case strings.HasPrefix(name, "/"):
		return "", &NameError{"absolute path"}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", &NameError{"control character"}
		} else if c == '\\' {
			return "", &NameError{"backslash"}
		}
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", &NameError{"parent directory element"}
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", &NameError{"names a directory"}
	}
	return clean, nil
}

// splitPrefix splits "a/b/c" into "a" and "b/c"; a name without a slash has
// no prefix.
func splitPrefix(name string) (prefix, rest string, ok bool) {
	i := strings.IndexByte(name, '/')
	if i < 0 {
		return "", name, false
	}
	return name[:i], name[i+1:], true
}

// isSerialPrefix reports whether s is a Pi serial prefix: exactly 8
// lowercase hex digits, as the bootloader formats it.
func isSerialPrefix(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseMACPrefix parses a dashed EUI-48 prefix ("dc-a6-32-01-36-c2"), as
// EEPROM TFTP_PREFIX=2 sends it. Upper case is accepted.
func parseMACPrefix(s string) (net.HardwareAddr, bool) {
	if len(s) != 17 || strings.Count(s, "-") != 5 {
		return nil, false
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, false
	}
	return mac, true
}
