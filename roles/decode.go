package roles

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks a parsed role file node by node (as internal/cluster
// does for cluster.yaml) instead of unmarshalling into structs, so every
// problem is reported at the line and column where it was written, and
// all problems of a file are reported at once.
type decoder struct {
	file   string
	lines  []string // the source, for block scalars' indentation
	errs   ErrorList
	budget int // node visits left; aliases can make a small file huge
}

// visitBudget is far above any real role file and far below what alias
// bombs reach.
const visitBudget = 100_000

func newDecoder(file string, src []byte) *decoder {
	return &decoder{file: file, lines: strings.Split(string(src), "\n"), budget: visitBudget}
}

func (d *decoder) errAt(n *yaml.Node, fix, format string, args ...any) {
	e := &Error{File: d.file, Msg: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// resolve follows an alias and charges the visit to the budget; nil when
// there is nothing to read.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	d.budget--
	if d.budget == 0 {
		d.errAt(n, "write the file without deeply nested aliases", "the file is too complex to read (aliases expand to too much)")
	}
	if d.budget <= 0 || n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

// mapping walks a mapping. With keys != nil only those keys are allowed
// (what says where, for the message); with keys == nil every key is a
// name the caller checks. Duplicate keys are reported once.
func (d *decoder) mapping(n *yaml.Node, what string, keys []string, each func(key string, k, v *yaml.Node)) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		fix := "write key: value lines indented under it"
		if keys != nil {
			fix += " (keys here: " + strings.Join(keys, ", ") + ")"
		}
		d.errAt(n, fix, "%s must be a mapping, not %s", what, kindName(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errAt(k, "write a plain name before the colon", "a key must be a plain name, not %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.errAt(k, "write the keys out; role files do not merge with <<:", "merge keys are not supported in role files")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errAt(k, "remove one of them", "duplicate key %s (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if keys != nil && !slices.Contains(keys, k.Value) {
			fix := "remove it; the keys here are " + strings.Join(keys, ", ")
			if best := closest(k.Value, keys); best != "" {
				fix = "write " + best + ": instead (keys here: " + strings.Join(keys, ", ") + ")"
			}
			d.errAt(k, fix, "unknown key %q in %s", k.Value, what)
			continue
		}
		each(k.Value, k, n.Content[i+1])
	}
}

// scalar reads a single value as written (no YAML type guessing). A null
// reads as absent.
func (d *decoder) scalar(n *yaml.Node, what, example string) (string, *yaml.Node, bool) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return "", n, false
	}
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, "write a single value, e.g. "+example, "%s must be a single value, not %s", what, kindName(n))
		return "", n, false
	}
	return n.Value, n, true
}

// list reads a list; a single value is a list of one.
func (d *decoder) list(n *yaml.Node, what, example string) []*yaml.Node {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		out := make([]*yaml.Node, 0, len(n.Content))
		for _, item := range n.Content {
			if item = d.resolve(item); item != nil {
				out = append(out, item)
			}
		}
		return out
	}
	d.errAt(n, "write a list, e.g. "+example, "%s must be a list, not %s", what, kindName(n))
	return nil
}

func (d *decoder) boolean(n *yaml.Node, what string) (bool, bool) {
	str, n, ok := d.scalar(n, what, "true")
	if !ok {
		return false, false
	}
	switch strings.ToLower(strings.TrimSpace(str)) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	d.errAt(n, "write true or false", "%s %q is not true or false", what, str)
	return false, false
}

// closest suggests the known key a misspelt one most likely meant.
func closest(key string, keys []string) string {
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
