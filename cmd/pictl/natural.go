package main

import (
	"slices"
	"strconv"
	"strings"
)

// sortNatural sorts names so that embedded numbers compare as numbers:
// pi2, pi10 rather than pi10, pi2.
func sortNatural(s []string) {
	slices.SortFunc(s, compareNatural)
}

func compareNatural(a, b string) int {
	for a != "" && b != "" {
		ai, bi := digitsPrefix(a), digitsPrefix(b)
		if ai > 0 && bi > 0 {
			an, _ := strconv.ParseUint(a[:ai], 10, 64)
			bn, _ := strconv.ParseUint(b[:bi], 10, 64)
			if an != bn {
				if an < bn {
					return -1
				}
				return 1
			}
			a, b = a[ai:], b[bi:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return strings.Compare(a, b)
}

func digitsPrefix(s string) int {
	i := 0
	for i < len(s) && i < 18 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
