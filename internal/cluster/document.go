package cluster

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Document is an editable cluster.yaml. It edits the YAML node tree rather
// than re-marshalling structs, so a person's comments, key order, quoting
// and blank lines survive an edit by the CLI. yaml.v3 does normalise the
// indentation (to the file's own step) and spacing before line comments.
type Document struct {
	filename string
	root     *yaml.Node // a DocumentNode
	src      []byte
	lines    []string
}

// ParseDocument parses cluster.yaml content for editing. It reports YAML
// syntax errors only; Cluster validates.
func ParseDocument(filename string, data []byte) (*Document, error) {
	root, err := parse(filename, data)
	if err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		// yaml.v3 drops the comments of a file with nothing else in it.
		root.HeadComment = strings.TrimSpace(string(data))
	}
	return &Document{filename: filename, root: root, src: data, lines: strings.Split(string(data), "\n")}, nil
}

// Filename is the name the document was parsed with.
func (d *Document) Filename() string { return d.filename }

// Cluster decodes and validates the document as it is now (an ErrorList on
// problems). Positions refer to the parsed file; values set since have
// none and are reported at the nearest enclosing key that has one.
func (d *Document) Cluster() (*Cluster, error) { return clusterFrom(d.filename, d.root) }

// NotFoundError says a path is not in the document.
type NotFoundError struct{ Path []string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s is not in cluster.yaml", strings.Join(e.Path, "."))
}

// NotFound marks the error as "absent" for callers that test behaviour.
func (e *NotFoundError) NotFound() bool { return true }

// Get returns the value at path (aliases followed), e.g. Get("nodes", "pi3").
func (d *Document) Get(path ...string) (*yaml.Node, bool) {
	cur := d.top()
	for _, key := range path {
		if cur == nil || cur.Kind != yaml.MappingNode {
			return nil, false
		}
		i := findKey(cur, key)
		if i < 0 {
			return nil, false
		}
		cur = cur.Content[i+1]
		if cur.Kind == yaml.AliasNode {
			cur = cur.Alias
		}
	}
	return cur, cur != nil
}

// Set writes value at path, creating missing mappings on the way. value is
// a string, bool, integer, []string, map[string]any (nil entries skipped)
// or a fmt.Stringer / encoding.TextMarshaler (written as its text). An
// existing key keeps its place and its comments; a new key goes where the
// schema's order puts it (a new node at the end of nodes:). New node
// entries take the style (one-line {…} or block) of the other nodes.
func (d *Document) Set(value any, path ...string) error {
	if len(path) == 0 {
		return errors.New("cluster.yaml: Set needs a path")
	}
	parent, err := d.mappingAt(path[:len(path)-1], true)
	if err != nil {
		return err
	}
	v, err := valueNode(value, path, parent)
	if err != nil {
		return err
	}
	key := path[len(path)-1]
	if i := findKey(parent, key); i >= 0 {
		keepComments(parent.Content[i+1], v)
		parent.Content[i+1] = v
		return nil
	}
	d.insertKey(parent, path, v)
	return nil
}

// Delete removes the key at path with its value. Comments that stood
// between this entry and the next (a foot comment) stay in place.
func (d *Document) Delete(path ...string) error {
	if len(path) == 0 {
		return errors.New("cluster.yaml: Delete needs a path")
	}
	parent, err := d.mappingAt(path[:len(path)-1], false)
	if err != nil {
		return err
	}
	i := findKey(parent, path[len(path)-1])
	if i < 0 {
		return &NotFoundError{Path: path}
	}
	k, v := parent.Content[i], parent.Content[i+1]
	foot := joinComments(k.FootComment, v.FootComment)
	if foot != "" {
		switch {
		case i >= 2:
			prev := parent.Content[i-2]
			prev.FootComment = joinComments(prev.FootComment, foot)
		case i+2 < len(parent.Content):
			next := parent.Content[i+2]
			next.HeadComment = joinComments(foot+"\n", next.HeadComment)
		}
	}
	parent.Content = append(parent.Content[:i:i], parent.Content[i+2:]...)
	return nil
}

func joinComments(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}

// top is the document's top-level mapping (nil if the document is empty
// or not a mapping).
func (d *Document) top() *yaml.Node {
	if len(d.root.Content) == 0 {
		return nil
	}
	t := d.root.Content[0]
	if t.Kind == yaml.AliasNode {
		t = t.Alias
	}
	return t
}

// mappingAt walks to the mapping at path, creating missing (or null)
// entries as empty mappings when create is set.
func (d *Document) mappingAt(path []string, create bool) (*yaml.Node, error) {
	if d.root.Kind != yaml.DocumentNode {
		d.root = &yaml.Node{Kind: yaml.DocumentNode}
	}
	if len(d.root.Content) == 0 || isNull(d.root.Content[0]) {
		if !create {
			return nil, &NotFoundError{Path: path}
		}
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if len(d.root.Content) == 0 {
			d.root.Content = []*yaml.Node{m}
		} else {
			keepComments(d.root.Content[0], m)
			d.root.Content[0] = m
		}
	}
	cur := d.root.Content[0]
	if cur.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: the file is %s, not a mapping of settings", d.filename, kindName(cur))
	}
	if create && len(cur.Content) == 0 {
		cur.Style = 0
	}
	for i, key := range path {
		j := findKey(cur, key)
		if j < 0 {
			if !create {
				return nil, &NotFoundError{Path: path[:i+1]}
			}
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: mappingStyle(path[:i+1], cur)}
			d.insertKey(cur, path[:i+1], m)
			cur = m
			continue
		}
		v := cur.Content[j+1]
		switch {
		case v.Kind == yaml.AliasNode:
			return nil, fmt.Errorf("%s: %s is an alias (*%s); edit it by hand", d.filename, strings.Join(path[:i+1], "."), v.Value)
		case v.Kind == yaml.MappingNode:
			if create && len(v.Content) == 0 {
				// An empty {} gets the style its first entry needs.
				v.Style = mappingStyle(path[:i+1], cur)
			}
		case isNull(v) && create:
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: mappingStyle(path[:i+1], cur)}
			keepComments(v, m)
			cur.Content[j+1] = m
			v = m
		case isNull(v):
			return nil, &NotFoundError{Path: path[:i+2]}
		default:
			return nil, fmt.Errorf("%s: %s is %s, not a mapping", d.filename, strings.Join(path[:i+1], "."), kindName(v))
		}
		cur = v
	}
	return cur, nil
}

// mappingStyle is the style for a new mapping at path inside container:
// flow inside flow; a node entry like its sibling nodes, one line each
// when it is the first; block elsewhere.
func mappingStyle(path []string, container *yaml.Node) yaml.Style {
	if container.Style&yaml.FlowStyle != 0 {
		return yaml.FlowStyle
	}
	if len(path) == 2 && path[0] == "nodes" {
		for i := 1; i < len(container.Content); i += 2 {
			if sib := container.Content[i]; sib.Kind == yaml.MappingNode && len(sib.Content) > 0 {
				return sib.Style & yaml.FlowStyle
			}
		}
		return yaml.FlowStyle
	}
	return 0
}

// findKey is the index of key's key node in mapping m, or -1. With
// duplicate keys the first counts, as for the decoder.
func findKey(m *yaml.Node, key string) int {
	if m == nil || m.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key && k.Tag != "!!merge" {
			return i
		}
	}
	return -1
}

// insertKey adds path's last key with value v to mapping m. In a known
// section it goes right after the key the schema puts just before it (so
// a person's own order is kept around it); names go at the end, taking
// over the comment that closed the mapping.
func (d *Document) insertKey(m *yaml.Node, path []string, v *yaml.Node) {
	key := path[len(path)-1]
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
	pos := len(m.Content)
	if sec := sectionAt(path[:len(path)-1]); sec != secNone {
		r := sec.rank(key)
		after, afterRank, before, beforeRank := -1, -1, -1, 1<<30
		for i := 0; i+1 < len(m.Content); i += 2 {
			kr := sec.rank(m.Content[i].Value)
			if kr < r && kr > afterRank {
				after, afterRank = i, kr
			}
			if kr > r && kr < beforeRank {
				before, beforeRank = i, kr
			}
		}
		switch {
		case after >= 0:
			pos = after + 2
		case before >= 0:
			pos = before
		}
	}
	if pos == len(m.Content) && pos >= 2 && m.Style&yaml.FlowStyle == 0 {
		last := m.Content[pos-2]
		k.FootComment, last.FootComment = last.FootComment, ""
	}
	if len(path) == 1 && d.sectionsSpaced(m) {
		k.HeadComment = blankMarker
	}
	m.Content = append(m.Content[:pos:pos], append([]*yaml.Node{k, v}, m.Content[pos:]...)...)
}

// sectionsSpaced reports whether the person separates top-level sections
// with blank lines, so a new section gets one too.
func (d *Document) sectionsSpaced(top *yaml.Node) bool {
	for i := 2; i+1 < len(top.Content); i += 2 {
		if d.blankAbove(top.Content[i]) {
			return true
		}
	}
	return false
}

// blankAbove reports whether the source has a blank line right above n
// (above its head comment, if any).
func (d *Document) blankAbove(n *yaml.Node) bool {
	if n.Line <= 0 {
		return false
	}
	first := n.Line
	if n.HeadComment != "" {
		first -= strings.Count(n.HeadComment, "\n") + 1
	}
	prev := first - 1
	return prev >= 1 && prev <= len(d.lines) && strings.TrimSpace(d.lines[prev-1]) == ""
}

// keepComments moves old's comments (and a quoted string's quoting) to
// its replacement.
func keepComments(old, v *yaml.Node) {
	v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
	switch {
	case old.Kind == yaml.ScalarNode && v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Style == 0 &&
		old.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0:
		v.Style = old.Style
	case old.Kind == v.Kind && v.Kind != yaml.ScalarNode && old.Style&yaml.FlowStyle == 0:
		v.Style &^= yaml.FlowStyle
	}
}

// valueNode builds the YAML for a Go value set at path in container.
func valueNode(value any, path []string, container *yaml.Node) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.ScalarNode}
	switch v := value.(type) {
	case string:
		setString(n, v)
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(v)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		n.Tag, n.Value = "!!int", fmt.Sprint(v)
	case []string:
		n.Kind, n.Tag, n.Style = yaml.SequenceNode, "!!seq", yaml.FlowStyle
		for _, s := range v {
			item := &yaml.Node{}
			setString(item, s)
			n.Content = append(n.Content, item)
		}
	case map[string]any:
		n.Kind, n.Tag, n.Style = yaml.MappingNode, "!!map", mappingStyle(path, container)
		sec := sectionAt(path)
		keys := make([]string, 0, len(v))
		for k, val := range v {
			if val != nil {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			ri, rj := sec.rank(keys[i]), sec.rank(keys[j])
			if ri != rj {
				return ri < rj
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			child, err := valueNode(v[k], append(path[:len(path):len(path)], k), n)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, child)
		}
	case encoding.TextMarshaler:
		b, err := v.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(path, "."), err)
		}
		setString(n, string(b))
	case fmt.Stringer:
		setString(n, v.String())
	default:
		return nil, fmt.Errorf("%s: cannot write a %T into cluster.yaml", strings.Join(path, "."), value)
	}
	return n, nil
}

// yaml11Special matches plain words YAML 1.1 readers (PyYAML, older
// tools) take for booleans or base-60 numbers, though yaml.v3 (YAML 1.2)
// writes them unquoted as strings.
var yaml11Special = regexp.MustCompile(`^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+)$`)

// setString makes n the string s, quoted where any YAML reader could take
// it for something else.
func setString(n *yaml.Node, s string) {
	n.SetString(s)
	if yaml11Special.MatchString(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
}

// blankMarker stands in for a blank line while yaml.v3 encodes (it keeps
// comments but drops blank lines); Bytes turns it back into one.
const blankMarker = "#pictl:blank-line-7b1f"

// Bytes encodes the document.
func (d *Document) Bytes() ([]byte, error) {
	if len(d.root.Content) == 0 {
		if d.root.HeadComment == "" {
			return []byte{}, nil
		}
		return []byte(d.root.HeadComment + "\n"), nil
	}
	restore := d.markBlankLines()
	defer restore()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(d.indent())
	if err := enc.Encode(d.root); err != nil {
		return nil, fmt.Errorf("%s: encode: %w", d.filename, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: encode: %w", d.filename, err)
	}
	return d.unquoteMACs(restoreBlankLines(buf.Bytes())), nil
}

// markBlankLines puts a marker comment on every key that had a blank line
// before it (or before its head comment) in the source, and returns the
// function that takes the markers out of the tree again.
func (d *Document) markBlankLines() (restore func()) {
	type saved struct {
		n    *yaml.Node
		head string
	}
	var undo []saved
	blankAbove := d.blankAbove
	mark := func(n *yaml.Node) {
		undo = append(undo, saved{n, n.HeadComment})
		n.HeadComment = joinComments(blankMarker, n.HeadComment)
	}
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] || n.Kind == yaml.AliasNode {
			return
		}
		seen[n] = true
		block := n.Style&yaml.FlowStyle == 0
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if block && blankAbove(n.Content[i]) {
					mark(n.Content[i])
				}
				walk(n.Content[i+1])
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if block && c.Kind == yaml.ScalarNode && blankAbove(c) {
					mark(c)
				}
				walk(c)
			}
		}
	}
	walk(d.root)
	return func() {
		for _, s := range undo {
			s.n.HeadComment = s.head
		}
	}
}

// restoreBlankLines turns markers into blank lines, never two in a row
// (yaml.v3 already writes one after some comments).
func restoreBlankLines(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if strings.TrimSpace(l) == blankMarker {
			if len(out) == 0 || strings.TrimSpace(out[len(out)-1]) == "" {
				continue
			}
			l = "\n"
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, ""))
}

var quotedMACRE = regexp.MustCompile(`'([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})'`)

// unquoteMACs undoes yaml.v3's quoting of MACs inside {…}: the emitter
// quotes any ':' in flow context, though YAML and yaml.v3 read
// {mac: dc:a6:32:01:36:c2} fine. MACs the person quoted stay quoted.
func (d *Document) unquoteMACs(b []byte) []byte {
	return quotedMACRE.ReplaceAllFunc(b, func(m []byte) []byte {
		if bytes.Contains(d.src, m) {
			return m
		}
		return m[1 : len(m)-1]
	})
}

// indent is the file's own indentation step (2 if it shows none).
func (d *Document) indent() int {
	var find func(n *yaml.Node, depth int) int
	find = func(n *yaml.Node, depth int) int {
		if n == nil || depth > 4 {
			return 0
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			return find(n.Content[0], depth+1)
		}
		if n.Kind != yaml.MappingNode || n.Style&yaml.FlowStyle != 0 {
			return 0
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && k.Line > 0 && v.Line > k.Line {
				if step := v.Column - k.Column; step >= 2 && step <= 8 {
					return step
				}
			}
		}
		return 0
	}
	if step := find(d.root, 0); step > 0 {
		return step
	}
	return 2
}
