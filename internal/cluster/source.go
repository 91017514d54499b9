package cluster

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// source is what decoding learned about a file besides the values: where
// each value was written (so validation can point at it), the order of
// named entries, which values were unreadable (so they are not reported
// twice), and the problems found so far.
//
// Paths name places in the schema: "controller.address", "nodes.pi3.ip",
// "nodes.pi3.macs[0]". A MAC written as `mac:` is recorded as macs[0], an
// interface written as `interface:` as interfaces[0], so validation needs
// to know one spelling only.
type source struct {
	file   string
	hasDoc bool
	keys   map[string]*yaml.Node // path → key node
	values map[string]*yaml.Node // path → value node
	order  map[string][]string   // "nodes" → node names in file order
	bad    map[string]bool       // paths whose value could not be read
	errs   ErrorList
	budget int // node visits left; aliases can make a small file huge
}

// visitBudget bounds the work on one file: far above any real cluster.yaml
// (a 1000-node file visits ~20k nodes), far below what alias bombs reach.
const visitBudget = 2_000_000

func newSource(file string) *source {
	return &source{
		file:   file,
		keys:   map[string]*yaml.Node{},
		values: map[string]*yaml.Node{},
		order:  map[string][]string{},
		bad:    map[string]bool{},
		budget: visitBudget,
	}
}

// errAt records a problem at a YAML node.
func (s *source) errAt(n *yaml.Node, fix, format string, args ...any) {
	e := &Error{File: s.file, Msg: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	s.errs = append(s.errs, e)
}

// errPath records a problem at the value at path; for a name (onKey) at
// its key. A path the file does not contain (a missing setting, a node
// added in memory) points at the nearest enclosing key that it does.
func (s *source) errPath(path string, onKey bool, fix, format string, args ...any) {
	e := &Error{File: s.file, Msg: fmt.Sprintf(format, args...), Fix: fix}
	e.Line, e.Column = s.locate(path, onKey)
	s.errs = append(s.errs, e)
}

func (s *source) locate(path string, onKey bool) (line, col int) {
	exact := true
	for p := path; p != ""; p = parentPath(p) {
		first, second := s.values[p], s.keys[p]
		if onKey || !exact {
			first, second = second, first
		}
		for _, n := range []*yaml.Node{first, second} {
			if n != nil && n.Line > 0 {
				return n.Line, n.Column
			}
		}
		exact = false
	}
	if s.hasDoc || s.file != "" {
		return 1, 1 // a missing top-level section: the file's start
	}
	return 0, 0
}

// line is where the value at path starts, 0 if unknown.
func (s *source) line(path string) int {
	if n := s.keys[path]; n != nil {
		return n.Line
	}
	if n := s.values[path]; n != nil {
		return n.Line
	}
	return 0
}

// atLine formats " at line N" for "also node pi2 at line 9", or "".
func (s *source) atLine(path string) string {
	if l := s.line(path); l > 0 {
		return fmt.Sprintf(" at line %d", l)
	}
	return ""
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// describe names the place a path points at for messages: "node pi3",
// "controller.address".
func describe(path string) string {
	parts := strings.SplitN(path, ".", 3)
	if len(parts) >= 2 {
		kind := map[string]string{"nodes": "node", "images": "image", "volumes": "volume", "roles": "role"}[parts[0]]
		if kind != "" {
			if len(parts) == 2 {
				return kind + " " + parts[1]
			}
			return kind + " " + parts[1] + "'s " + parts[2]
		}
	}
	if path == "" {
		return "the file"
	}
	return path
}
