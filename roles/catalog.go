package roles

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// builtinFS holds the built-in roles, one directory each: role.yaml and
// the templates it names.
//
//go:embed builtin
var builtinFS embed.FS

// builtinNames is the order `pictl role ls` shows the built-ins in.
func builtinNames() []string { return []string{"web", "db", "lb", "router"} }

// roleFile is the definition's name inside a role directory.
const roleFile = "role.yaml"

// Catalog holds every known role: the embedded built-ins plus the user
// roles of one directory.
type Catalog struct {
	roles map[string]*Role
	names []string
}

// Role is a role definition with extends: applied: what Render needs,
// and what the controller and the balancer ask about.
type Role struct {
	name        string
	file        string
	builtin     bool
	extends     string
	description string
	vars        map[string]varDef
	packages    [][]string
	mounts      map[string]mountDef
	units       map[string]*unitDef
	tmpfiles    []*tmpl
	files       map[string]*fileDef
	balancer    *balancerDef
}

// LoadCatalog reads the built-in roles and the user roles in userDir ("" or
// a missing directory: built-ins only). A user role is either
// userDir/NAME.yaml (its templates beside it in userDir) or
// userDir/NAME/role.yaml (its templates in userDir/NAME). Every problem of
// every file is returned at once, each naming file:line:column.
func LoadCatalog(userDir string) (*Catalog, error) {
	c := &Catalog{roles: map[string]*Role{}}
	var errs ErrorList
	for _, name := range builtinNames() {
		dir := "builtin/" + name
		file := dir + "/" + roleFile
		src, err := builtinFS.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("built-in role %s: %w", name, err)
		}
		read := func(p string) ([]byte, string, error) {
			data, err := builtinFS.ReadFile(dir + "/" + p)
			return data, dir + "/" + p, err
		}
		def, derrs := parseDefinition(name, file, src, read)
		errs = append(errs, derrs...)
		if def == nil {
			continue
		}
		def.builtin = true
		if def.extends != "" {
			errs = append(errs, errAtNode(file, def.extendsNode, "remove extends: from a built-in role", "built-in role %s cannot extend another", name))
			continue
		}
		c.add(def, nil)
	}
	if len(errs) > 0 {
		// A built-in that does not load is pictl's bug; say so plainly.
		return nil, fmt.Errorf("built-in roles: %w", errs.errorsOrNil())
	}

	user, uerrs, err := readUserDir(userDir)
	if err != nil {
		return nil, err
	}
	errs = append(errs, uerrs...)
	for _, def := range user {
		var parent *Role
		if def.extends != "" {
			p, ok := c.roles[def.extends]
			if !ok || !p.builtin {
				errs = append(errs, errAtNode(def.file, def.extendsNode,
					"extend a built-in role: "+strings.Join(builtinNames(), ", "), "role %s extends %q, which is not a built-in role", def.name, def.extends))
				continue
			}
			parent = p
		}
		errs = append(errs, c.add(def, parent)...)
	}
	if err := errs.errorsOrNil(); err != nil {
		return nil, err
	}
	return c, nil
}

// readUserDir parses the role files of dir, sorted by role name.
func readUserDir(dir string) ([]*definition, ErrorList, error) {
	if dir == "" {
		return nil, nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("user roles: %w", err)
	}
	var defs []*definition
	var errs ErrorList
	files := map[string]string{} // role name → file, to report a role defined twice
	for _, e := range entries {
		name, isRole := userRoleName(e)
		if !isRole {
			continue
		}
		file, roleDir := filepath.Join(dir, e.Name()), dir
		if e.IsDir() {
			roleDir = file
			file = filepath.Join(roleDir, roleFile)
			if _, err := os.Stat(file); err != nil {
				errs = append(errs, &Error{File: roleDir, Msg: "a role directory without " + roleFile, Fix: "add " + file + " or move the directory away"})
				continue
			}
		}
		switch {
		case !nameRE.MatchString(name):
			errs = append(errs, &Error{File: file, Msg: fmt.Sprintf("role name %q is not lower-case letters, digits and -", name), Fix: "rename it, e.g. shop-web"})
			continue
		case name == "none":
			errs = append(errs, &Error{File: file, Msg: "a role cannot be named none", Fix: "rename it; none means no role"})
			continue
		case slices.Contains(builtinNames(), name):
			errs = append(errs, &Error{File: file, Msg: "role " + name + " is built in", Fix: "name yours differently and write extends: " + name + " in it"})
			continue
		}
		if first, dup := files[name]; dup {
			errs = append(errs, &Error{File: file, Msg: "role " + name + " is also defined in " + first, Fix: "keep one of them"})
			continue
		}
		files[name] = file
		src, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("user role %s: %w", name, err)
		}
		fsys := os.DirFS(roleDir)
		read := func(p string) ([]byte, string, error) {
			data, err := fs.ReadFile(fsys, p)
			return data, filepath.Join(roleDir, filepath.FromSlash(p)), err
		}
		def, derrs := parseDefinition(name, file, src, read)
		errs = append(errs, derrs...)
		if def != nil {
			defs = append(defs, def)
		}
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].name < defs[j].name })
	return defs, errs, nil
}

// add merges def over parent (nil: none) and records the role.
func (c *Catalog) add(def *definition, parent *Role) ErrorList {
	r := &Role{
		name:        def.name,
		file:        def.file,
		builtin:     def.builtin,
		extends:     def.extends,
		description: def.description,
		vars:        map[string]varDef{},
		mounts:      map[string]mountDef{},
		units:       map[string]*unitDef{},
		files:       map[string]*fileDef{},
		balancer:    def.balancer,
	}
	if parent != nil {
		if r.description == "" {
			r.description = parent.description
		}
		if r.balancer == nil {
			r.balancer = parent.balancer
		}
		copyInto(r.vars, parent.vars)
		copyInto(r.mounts, parent.mounts)
		copyInto(r.files, parent.files)
		r.packages = slices.Clone(parent.packages)
		r.tmpfiles = slices.Clone(parent.tmpfiles)
		for name, u := range parent.units {
			cp := *u
			r.units[name] = &cp
		}
	}
	copyInto(r.vars, def.vars)
	copyInto(r.mounts, def.mounts)
	copyInto(r.files, def.files)
	r.tmpfiles = append(r.tmpfiles, def.tmpfiles...)
	for _, alts := range def.packages {
		if !slices.ContainsFunc(r.packages, func(p []string) bool { return slices.Equal(p, alts) }) {
			r.packages = append(r.packages, alts)
		}
	}
	for name, u := range def.units {
		base, ok := r.units[name]
		if !ok {
			r.units[name] = u
			continue
		}
		// Extending a unit adds to it: settings appended after the
		// parent's (later lines win in systemd), mounts joined.
		merged := &unitDef{
			mounts:   slices.Clone(base.mounts),
			mountsAt: base.mountsAt,
			shared:   base.shared || u.shared,
			dropin:   append(slices.Clone(base.dropin), u.dropin...),
			unit:     base.unit,
		}
		for _, m := range u.mounts {
			if !slices.Contains(merged.mounts, m) {
				merged.mounts = append(merged.mounts, m)
			}
		}
		if u.mountsAt != nil {
			merged.mountsAt = u.mountsAt
		}
		if u.unit != nil {
			merged.unit = u.unit
		}
		r.units[name] = merged
	}
	var errs ErrorList
	for _, name := range sortedKeys(r.units) {
		u := r.units[name]
		for _, vol := range u.mounts {
			if _, ok := r.mounts[vol]; ok {
				continue
			}
			e := &Error{File: def.file}
			if u.mountsAt != nil {
				e.File, e.Line, e.Column = u.mountsAt.File, u.mountsAt.Line, u.mountsAt.Column
			}
			e.Msg = fmt.Sprintf("unit %s needs volume %s, which role %s does not mount", name, vol, def.name)
			e.Fix = "add it under mounts:, e.g. mounts: {" + vol + ": {path: /srv/" + vol + "}}"
			errs = append(errs, e)
		}
	}
	mountPoints := map[string]string{}
	for _, vol := range sortedKeys(r.mounts) {
		p := r.mounts[vol].path
		if other, dup := mountPoints[p]; dup {
			errs = append(errs, &Error{File: def.file, Msg: fmt.Sprintf("volumes %s and %s are both mounted on %s", other, vol, p), Fix: "give each its own path"})
		}
		mountPoints[p] = vol
	}
	if len(errs) > 0 {
		return errs
	}
	c.roles[r.name] = r
	c.names = append(c.names, r.name)
	return nil
}

func copyInto[K comparable, V any](dst, src map[K]V) {
	for k, v := range src {
		dst[k] = v
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func errAtNode(file string, n *yaml.Node, fix, format string, args ...any) *Error {
	e := &Error{File: file, Msg: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// Names lists the roles: built-ins first (web, db, lb, router), then the
// user roles sorted.
func (c *Catalog) Names() []string { return slices.Clone(c.names) }

// Role returns the named role.
func (c *Catalog) Role(name string) (*Role, bool) {
	r, ok := c.roles[name]
	return r, ok
}

// TargetName is the systemd target a node of role isolates:
// "pictl-role-<role>.target". A node without a role ("" or "none")
// isolates multi-user.target, which is also its default.target, so a
// reboot and a live switch land in the same state.
func TargetName(role string) string {
	if role == "" || role == NoRole {
		return "multi-user.target"
	}
	return "pictl-role-" + role + ".target"
}

// NoRole is the role name that means no role.
const NoRole = "none"

// Name is the role's name.
func (r *Role) Name() string { return r.name }

// Description says what the role is for.
func (r *Role) Description() string { return r.description }

// Builtin reports whether the role is embedded in pictl.
func (r *Role) Builtin() bool { return r.builtin }

// Extends names the built-in role this one extends ("" if none).
func (r *Role) Extends() string { return r.extends }

// File is the role's definition file as named in messages.
func (r *Role) File() string { return r.file }

// Packages lists the Debian packages the node's image must contain; each
// inner slice is a set of alternatives, any one of which will do.
func (r *Role) Packages() [][]string {
	out := make([][]string, len(r.packages))
	for i, p := range r.packages {
		out[i] = slices.Clone(p)
	}
	return out
}

// Balancer says what the role offers the balancer: the port its members
// serve on and how to check them; ok is false for a role that offers
// nothing.
func (r *Role) Balancer() (port int, check HealthCheck, ok bool) {
	if r.balancer == nil {
		return 0, HealthCheck{}, false
	}
	return r.balancer.port, r.balancer.check, true
}

// Volumes lists the shared volumes the role mounts, sorted: nfsd must let
// its nodes mount them.
func (r *Role) Volumes() []string { return sortedKeys(r.mounts) }

// Units lists the units the role wants, sorted.
func (r *Role) Units() []string { return sortedKeys(r.units) }

// Vars lists the vars the role takes, sorted.
func (r *Role) Vars() []string { return sortedKeys(r.vars) }

// CheckVars reports vars that the role does not take and required vars
// that are missing from vars (the role's vars from cluster.yaml).
func (r *Role) CheckVars(vars map[string]string) error {
	_, err := r.resolveVars(vars)
	return err
}

func (r *Role) resolveVars(given map[string]string) (map[string]string, error) {
	out := map[string]string{}
	var problems []string
	for _, name := range sortedKeys(given) {
		if _, ok := r.vars[name]; !ok {
			known := "it takes none"
			if len(r.vars) > 0 {
				known = "it takes " + strings.Join(r.Vars(), ", ")
			}
			problems = append(problems, fmt.Sprintf("role %s has no var %s (%s)", r.name, name, known))
			continue
		}
		if strings.ContainsAny(given[name], "\n\x00") {
			problems = append(problems, fmt.Sprintf("role %s's var %s has a line break", r.name, name))
			continue
		}
		out[name] = given[name]
	}
	for _, name := range r.Vars() {
		if _, ok := out[name]; ok {
			continue
		}
		v := r.vars[name]
		if v.required {
			if _, given := given[name]; !given {
				problems = append(problems, fmt.Sprintf("role %s needs var %s: set roles: {%s: {vars: {%s: ...}}} in cluster.yaml", r.name, name, r.name, name))
			}
			continue
		}
		out[name] = v.def
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

// unitPath is where a unit file (or its drop-in directory) lives in the tree.
func unitPath(name string) string { return path.Join(unitDir, name) }

// userRoleName is the role an entry of the user directory defines:
// NAME.yaml (or .yml) and NAME/ (holding role.yaml). Other files are a
// NAME.yaml role's templates, READMEs, editors' swap files.
func userRoleName(e fs.DirEntry) (string, bool) {
	switch n := e.Name(); {
	case strings.HasPrefix(n, "."):
		return "", false
	case e.IsDir():
		return n, true
	case strings.HasSuffix(n, ".yaml"):
		return strings.TrimSuffix(n, ".yaml"), true
	case strings.HasSuffix(n, ".yml"):
		return strings.TrimSuffix(n, ".yml"), true
	}
	return "", false
}

// UserRoleNames lists the roles a user directory defines, by their file
// names alone, without reading them: cluster.yaml's validation accepts a
// node's role that has a file, and LoadCatalog reports what is wrong in
// it. A missing or unreadable directory defines none.
func UserRoleNames(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if name, ok := userRoleName(e); ok && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// UserDir is where user roles live for a cluster.yaml: the roles
// directory beside it.
func UserDir(clusterYAML string) string {
	return filepath.Join(filepath.Dir(clusterYAML), "roles")
}
