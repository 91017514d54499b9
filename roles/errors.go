package roles

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a role file: where it is and what is wrong,
// formatted like cluster.yaml's errors (file:line:column: message; fix).
type Error struct {
	File         string
	Line, Column int // 1-based; 0 when unknown (text/template reports no column for parse errors)
	Msg          string
	Fix          string
}

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

// ErrorList is every problem found while loading the catalog, sorted by
// file and position.
type ErrorList []*Error

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

// maxErrors caps the list: past this a person fixes the first ones and
// loads again, and a hostile file cannot make the list huge.
const maxErrors = 100

func (l ErrorList) errorsOrNil() error {
	if len(l) == 0 {
		return nil
	}
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if len(l) > maxErrors {
		rest := len(l) - maxErrors
		l = append(l[:maxErrors:maxErrors], &Error{File: l[0].File, Msg: fmt.Sprintf("%d more problems not shown", rest), Fix: "fix the ones above first"})
	}
	return l
}
