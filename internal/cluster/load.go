package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pictl/pictl/roles"
)

// Load parses and validates cluster.yaml content, fills in defaults (see
// ApplyDefaults) and returns the cluster. filename is used in errors. Every
// problem found is returned, as an ErrorList.
func Load(filename string, data []byte) (*Cluster, error) {
	doc, err := parse(filename, data)
	if err != nil {
		return nil, err
	}
	return clusterFrom(filename, doc)
}

func clusterFrom(filename string, doc *yaml.Node) (*Cluster, error) {
	c, s := decode(filename, doc)
	c.userRoles = roles.UserRoleNames(roles.UserDir(filename))
	c.validate(s)
	if err := s.errs.errorsOrNil(); err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	return c, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblem reports whether msg is one of yaml.v3's parser errors,
// whose line numbers it reports 0-based (its scanner errors are 1-based).
func parserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected <document start>", "did not find expected <stream-start>",
		"did not find expected '-' indicator", "did not find expected key",
		"did not find expected node content", "found duplicate %YAML directive",
		"found duplicate %TAG directive", "found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// parse reads one YAML document. Syntax errors come back as an ErrorList
// of one, positioned at the line yaml.v3 names. An empty file is an empty
// document.
func parse(filename string, data []byte) (doc *yaml.Node, err error) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a bad file must
		// be an error, never a crash of the controller.
		if r := recover(); r != nil {
			doc, err = nil, ErrorList{{File: filename, Msg: fmt.Sprintf("cannot parse the file: %v", r), Fix: "check the YAML syntax"}}
		}
	}()
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: filename, Msg: fmt.Sprintf("the file is %d bytes, over the %d MiB limit", len(data), MaxFileSize>>20), Fix: "a cluster file is a few KiB: check the path"}}
	}
	if e := textProblem(filename, data); e != nil {
		return nil, ErrorList{e}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.DocumentNode}, nil
		}
		return nil, syntaxError(filename, data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(filename, data, err)
	default:
		e := &Error{File: filename, Msg: "the file holds more than one YAML document", Fix: "keep everything in one document: remove the second ---"}
		e.Line, e.Column = extra.Line, 1
		return nil, ErrorList{e}
	}
	return doc, nil
}

func syntaxError(filename string, data []byte, err error) error {
	e := &Error{File: filename, Msg: strings.TrimPrefix(err.Error(), "yaml: "),
		Fix: "check the indentation (spaces, not tabs) and quote values that contain ': ' or ' #'"}
	e.Line = 1 // yaml.v3 names no line for problems on the first
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
		if parserProblem(e.Msg) {
			e.Line++ // yaml.v3 counts lines from 0 for parser (not scanner) errors
		}
	}
	{
		lines := strings.Split(string(data), "\n")
		if e.Line >= 1 && e.Line <= len(lines) {
			text := lines[e.Line-1]
			e.Column = len(text) - len(strings.TrimLeft(text, " \t")) + 1
			if strings.HasPrefix(strings.TrimLeft(text, " "), "\t") {
				e.Fix = "indent with spaces; YAML does not allow tabs"
			}
		}
	}
	return ErrorList{e}
}
