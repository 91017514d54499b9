package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in cluster.yaml: where it is, what is wrong and
// what to write instead.
type Error struct {
	File         string
	Line, Column int // 1-based; 0 when unknown (e.g. a node added in memory)
	Msg          string
	Fix          string // what to write instead; may be empty
}

// Error formats the problem like a compiler does:
//
//	cluster.yaml:12:7: duplicate MAC dc:a6:32:01:36:c2 (also node pi2 at line 9); give each node its own MAC
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// ErrorList is every problem found in one file, in file order.
type ErrorList []*Error

// Error is one line per problem.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// maxErrors caps the list: past this, a person fixes the first ones and
// runs again, and a hostile file cannot make the list huge.
const maxErrors = 100

// errorsOrNil sorts the list by position (problems without a position
// last, in the order found) and returns nil for an empty one, so callers
// can compare the result with nil.
func (l ErrorList) errorsOrNil() error {
	if len(l) == 0 {
		return nil
	}
	slices.SortStableFunc(l, func(a, b *Error) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if len(l) > maxErrors {
		rest := len(l) - maxErrors
		l = append(l[:maxErrors:maxErrors], &Error{File: l[0].File, Msg: fmt.Sprintf("%d more problems not shown", rest), Fix: "fix the ones above first"})
	}
	return l
}
