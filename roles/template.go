package roles

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// tmpl is one text/template of a role, inline in the YAML or a file of
// the role's directory, with where it was written so that parse and
// execution errors name the role file's line and column.
type tmpl struct {
	t    *template.Template
	file string
	// line, col: where the template text starts; col is 0 for a
	// template file (its own lines are the positions).
	line, col int
	// indent is the column of a block scalar's content lines (| or >).
	block  bool
	indent int
}

// templateName is the one name every template is parsed under, so errors
// can be mapped back to the role file without guessing at file names.
const templateName = "t"

// templateFuncs are the functions role templates may call besides
// text/template's own.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		// unitEscape makes a value literal in a unit file: % starts a specifier.
		"unitEscape": specifierEscape,
		// Arithmetic for configs derived from a node's place in a list
		// (keepalived's priority from the node's rank among the lb nodes).
		"add": func(a, b int) int { return a + b },
		"sub": func(a, b int) int { return a - b },
		"mul": func(a, b int) int { return a * b },
		// fields splits a var on white space, list splits it on commas
		// (items trimmed, empty ones dropped): vars are strings.
		"fields": strings.Fields,
		"list":   splitList,
		// shquote makes a value one literal word of a POSIX shell script.
		"shquote": shellQuote,
	}
}

// parseTemplate parses text; a syntax error is reported at its position.
func (d *decoder) parseTemplate(n *yaml.Node, text string) *tmpl {
	t := &tmpl{file: d.file}
	if n != nil {
		t.line, t.col = n.Line, n.Column
		if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			t.block = true
			t.indent = d.blockIndent(n.Line + 1)
		} else if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			t.col++
		}
	}
	parsed, err := template.New(templateName).Option("missingkey=error").Funcs(templateFuncs()).Parse(text)
	if err != nil {
		d.errs = append(d.errs, t.wrap(err, "template syntax error"))
		return nil
	}
	t.t = parsed
	return t
}

// parseTemplateFile parses a whole file of the role's directory.
func parseTemplateFile(file, text string) (*tmpl, *Error) {
	t := &tmpl{file: file}
	parsed, err := template.New(templateName).Option("missingkey=error").Funcs(templateFuncs()).Parse(text)
	if err != nil {
		return nil, t.wrap(err, "template syntax error")
	}
	t.t = parsed
	return t, nil
}

// blockIndent is the indentation of a line of the source (1-based
// column of its first non-space), 0 if unknown.
func (d *decoder) blockIndent(line int) int {
	if line < 1 || line > len(d.lines) {
		return 0
	}
	l := d.lines[line-1]
	return len(l) - len(strings.TrimLeft(l, " ")) + 1
}

// templateErrRE matches text/template's error prefix:
// "template: t:LINE: msg" (parse) or "template: t:LINE:COL: msg" (execution).
var templateErrRE = regexp.MustCompile(`(?s)^template: ` + templateName + `:(\d+)(?::(\d+))?: (.*)$`)

// wrap turns a text/template error into an Error at the role file's
// position of the template line it names.
func (t *tmpl) wrap(err error, what string) *Error {
	e := &Error{File: t.file, Line: t.line, Column: t.col, Msg: what + ": " + err.Error()}
	m := templateErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return e
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2]) // 0 when text/template gives no column
	msg := strings.TrimPrefix(m[3], `executing "`+templateName+`" `)
	e.Msg = what + ": " + msg
	switch {
	case t.line == 0: // a template file: its lines are the positions
		e.Line, e.Column = line, col
	case t.block: // content starts on the line after the | or >
		e.Line = t.line + line
		e.Column = 0
		if col > 0 && t.indent > 0 {
			e.Column = t.indent + col - 1
		}
	default:
		e.Line = t.line + line - 1
		e.Column = t.col
		if line == 1 && col > 0 {
			e.Column = t.col + col - 1
		} else if line > 1 {
			e.Column = 0
		}
	}
	return e
}

// execute renders the template with data.
func (t *tmpl) execute(data any) (string, error) {
	var b bytes.Buffer
	if err := t.t.Execute(&b, data); err != nil {
		return "", t.wrap(err, "template")
	}
	return b.String(), nil
}

// templateData is what role templates see:
//
//	.Node.Name .Node.Arch .Node.MAC .Node.Addr  the node being rendered
//	.Node.Address                               its address; an error if it has none
//	.Role                                       the role's name
//	.Vars.NAME                                  the role's vars (defaults + cluster.yaml)
//	.Controller  .NFSPort                       pictl's address and NFS port
//	.Mounts.VOLUME                              where the role mounts a volume
//	.Balancer.Port                              the port offered to the balancer (0 = none)
//	.Nodes  (.NodesWithRole "web")              every node of the cluster
//	.Rank "lb"                                  this node's index among the role's nodes (-1: not one)
//	.Members "web"                              the role's nodes that have an address, with the
//	                                            port and check the role offers the balancer
//	.Subnet                                     the cluster's subnet (the controller's prefix)
type templateData struct {
	Node       templateNode
	Role       string
	Vars       map[string]string
	Controller netip.Addr
	NFSPort    uint16
	Mounts     map[string]string
	Balancer   struct{ Port int }
	Nodes      []Node
	Subnet     netip.Prefix
	offers     map[string]Offer
}

// Offer is what a role offers the balancer (and the lb role's HAProxy).
type Offer struct {
	Port  int
	Check HealthCheck
}

// Member is a node of a role as HAProxy sees it: where to send requests
// and how to check them.
type Member struct {
	Name  string
	Addr  netip.Addr
	Port  int
	Check HealthCheck
}

// Rank is the node's index among the nodes of role, sorted by name; -1
// when it is not one of them.
func (d templateData) Rank(role string) int {
	for i, n := range d.NodesWithRole(role) {
		if n.Name == d.Node.Name {
			return i
		}
	}
	return -1
}

// Members lists the nodes of role that have an address, with the port
// the role offers the balancer (0 when it offers none).
func (d templateData) Members(role string) []Member {
	var out []Member
	o := d.offers[role]
	for _, n := range d.NodesWithRole(role) {
		if !n.Addr.IsValid() {
			continue
		}
		out = append(out, Member{Name: n.Name, Addr: n.Addr, Port: o.Port, Check: o.Check})
	}
	return out
}

// splitList splits s at commas, trimming each item and dropping empty ones.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// shellQuote quotes s as one word for sh: inside single quotes nothing is
// special but the quote itself.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

type templateNode struct{ Node }

// errNoAddress is returned by .Node.Address for a node without an address.
var errNoAddress = errors.New("the node has no address yet")

// Address is the node's address for configs that must name it (a server
// bound to it): an error, not "invalid IP", when the node has none.
func (n templateNode) Address() (string, error) {
	if !n.Addr.IsValid() {
		return "", fmt.Errorf("node %s: %w (reserve one with ip: under the node in cluster.yaml)", n.Name, errNoAddress)
	}
	return n.Addr.String(), nil
}

// NodesWithRole lists the nodes of one role, sorted by name.
func (d templateData) NodesWithRole(role string) []Node {
	var out []Node
	for _, n := range d.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}
