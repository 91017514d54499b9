package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the duration the way a person would: "1h", "90s", "1h30m".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText writes the duration like String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration ("1h", "30m", "90s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration reads a Go duration such as "1h", "30m" or "1m30s".
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it like 1h, 30m or 90s", s)
	}
	return Duration(v), nil
}

// IsValid reports whether the range is set.
func (r AddrRange) IsValid() bool { return r.First.IsValid() && r.Last.IsValid() }

// Contains reports whether a lies in the range (inclusive).
func (r AddrRange) Contains(a netip.Addr) bool {
	return r.IsValid() && a.IsValid() && a.BitLen() == r.First.BitLen() &&
		r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// String writes "FIRST-LAST", or "" for an unset range.
func (r AddrRange) String() string {
	if !r.IsValid() {
		return ""
	}
	return r.First.String() + "-" + r.Last.String()
}

// MarshalText writes the range like String.
func (r AddrRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads "FIRST-LAST"; an empty text is the unset range.
func (r *AddrRange) UnmarshalText(b []byte) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		*r = AddrRange{}
		return nil
	}
	v, err := ParseAddrRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseAddrRange reads an inclusive IPv4 range written "FIRST-LAST". It
// does not check the order; validation reports a reversed range with its
// position.
func ParseAddrRange(s string) (AddrRange, error) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return AddrRange{}, fmt.Errorf("%q is not a range: write FIRST-LAST, e.g. 10.99.0.100-10.99.0.199", s)
	}
	a, err1 := netip.ParseAddr(strings.TrimSpace(first))
	b, err2 := netip.ParseAddr(strings.TrimSpace(last))
	if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() {
		return AddrRange{}, fmt.Errorf("%q is not a range of IPv4 addresses: write FIRST-LAST, e.g. 10.99.0.100-10.99.0.199", s)
	}
	return AddrRange{First: a, Last: b}, nil
}

// broadcast is the last address of an IPv4 prefix (invalid for IPv6).
func broadcast(p netip.Prefix) netip.Addr {
	if !p.Addr().Is4() {
		return netip.Addr{}
	}
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// addrAdd returns a+n for IPv4 addresses, clamped to the address space
// (other addresses come back unchanged).
func addrAdd(a netip.Addr, n int64) netip.Addr {
	if !a.Is4() {
		return a
	}
	b := a.As4()
	v := int64(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) + n
	v = max(0, min(v, 1<<32-1))
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
