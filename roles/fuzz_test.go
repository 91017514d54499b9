package roles

import (
	"errors"
	"testing"
)

// FuzzParseDefinition: no role file crashes the loader or the renderer,
// and every problem is an *Error with a file name.
func FuzzParseDefinition(f *testing.F) {
	for _, name := range builtinNames() {
		src, err := builtinFS.ReadFile("builtin/" + name + "/" + roleFile)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("files:\n  /etc/x: {content: \"{{range .Nodes}}{{.Name}}{{end}}\"}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		read := func(p string) ([]byte, string, error) { return []byte("{{.Node.Name}}\n"), "fuzz/" + p, nil }
		def, errs := parseDefinition("fuzz", "fuzz.yaml", src, read)
		for _, e := range errs {
			if e.File == "" {
				t.Fatalf("error without a file: %v", e)
			}
		}
		if def == nil || len(errs) > 0 {
			return
		}
		c := &Catalog{roles: map[string]*Role{}}
		if errs := c.add(def, nil); len(errs) > 0 {
			return
		}
		n := sampleNodes()[0]
		n.Role = "fuzz"
		tr, err := c.Render(n, sampleFacts())
		if err != nil {
			var e *Error
			_ = errors.As(err, &e)
			return
		}
		for _, f := range tr.Files {
			if checkPath(f.Path) != nil {
				t.Fatalf("bad path %q in a rendered tree", f.Path)
			}
		}
	})
}
