package roles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// definition is one role file as written, before extends: is applied.
type definition struct {
	name        string
	file        string // as named in messages: "builtin/web/role.yaml", "/etc/pictl/roles/shop.yaml"
	builtin     bool
	description string
	extends     string
	extendsNode *yaml.Node
	vars        map[string]varDef
	packages    [][]string
	mounts      map[string]mountDef
	units       map[string]*unitDef
	tmpfiles    []*tmpl
	files       map[string]*fileDef
	balancer    *balancerDef
}

// varDef is a var the role takes; a var without a default must be set in
// cluster.yaml (roles: {NAME: {vars: {VAR: value}}}).
type varDef struct {
	def      string
	required bool
}

// mountDef mounts a shared volume served by pictl's nfsd.
type mountDef struct {
	path     string // absolute mount point
	readOnly bool
}

// unitDef is a unit the role wants: one the image provides (nginx.service),
// optionally with extra settings (dropin), or one the role writes (unit).
type unitDef struct {
	mounts []string // volumes the unit needs (RequiresMountsFor=)
	// mountsAt is where mounts: was written, for the check that the
	// role (after extends:) mounts them.
	mountsAt *Error
	shared   bool // also used by nodes of other roles: never masked
	dropin   []unitSection
	unit     []unitSection
}

type unitSection struct {
	name  string
	lines []unitLine
}

// unitLine is "Key=value"; the value is a template.
type unitLine struct {
	key   string
	value *tmpl
}

// fileDef is a file of the role layer: rendered from a template, or a
// whiteout hiding the image's file (remove: true).
type fileDef struct {
	tmpl   *tmpl
	remove bool
	mode   fs.FileMode
}

type balancerDef struct {
	port  int
	check HealthCheck
}

// HealthCheck is how the balancer probes a member of a role.
type HealthCheck struct {
	Kind     string        // "http" or "tcp"
	Path     string        // request path for http
	Interval time.Duration // between probes
	Timeout  time.Duration // for one probe
}

// The defaults of a balancer health check.
const (
	defaultCheckInterval = 2 * time.Second
	defaultCheckTimeout  = time.Second
)

var (
	roleKeys     = []string{"description", "extends", "vars", "packages", "mounts", "units", "tmpfiles", "files", "balancer"}
	mountKeys    = []string{"path", "mode"}
	unitKeys     = []string{"mounts", "shared", "dropin", "unit"}
	fileKeys     = []string{"template", "content", "remove", "mode"}
	balancerKeys = []string{"port", "check"}
	checkKeys    = []string{"type", "path", "interval", "timeout"}

	nameRE        = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	varRE         = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	packageRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	unitNameRE    = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|path|mount|automount|swap|target|slice)$`)
	sectionNameRE = regexp.MustCompile(`^(Unit|Service|Socket|Timer|Path|Mount|Automount|Swap|Slice|Install|X-[A-Za-z0-9-]+)$`)
	unitKeyRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
)

// readFunc reads a file of the role's directory (a template), returning
// its contents and its name for messages.
type readFunc func(name string) (data []byte, display string, err error)

// parseDefinition reads one role file. Every problem is in the returned
// list, at its line and column.
func parseDefinition(name, file string, src []byte, read readFunc) (*definition, ErrorList) {
	d := newDecoder(file, src)
	def := &definition{
		name:   name,
		file:   file,
		vars:   map[string]varDef{},
		mounts: map[string]mountDef{},
		units:  map[string]*unitDef{},
		files:  map[string]*fileDef{},
	}
	doc, perr := parseYAML(file, src)
	if perr != nil {
		d.errs = append(d.errs, perr)
		return nil, d.errs
	}
	top := doc
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			top = nil
		} else {
			top = top.Content[0]
		}
	}
	d.mapping(top, "a role file", roleKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "description":
			def.description, _, _ = d.scalar(v, "description", "description: what this role is for")
		case "extends":
			def.extends, def.extendsNode, _ = d.scalar(v, "extends", "extends: web")
		case "vars":
			d.decodeVars(def, v)
		case "packages":
			d.decodePackages(def, v)
		case "mounts":
			d.decodeMounts(def, v)
		case "units":
			d.decodeUnits(def, v)
		case "tmpfiles":
			for _, item := range d.list(v, "tmpfiles", "tmpfiles: [d /var/log/nginx 0755 root adm -]") {
				if str, n, ok := d.scalar(item, "a tmpfiles line", "d /var/log/nginx 0755 root adm -"); ok {
					if strings.ContainsAny(str, "\n") {
						d.errAt(n, "write one tmpfiles.d line per list item", "a tmpfiles line has a line break")
						continue
					}
					if t := d.parseTemplate(n, str); t != nil {
						def.tmpfiles = append(def.tmpfiles, t)
					}
				}
			}
		case "files":
			d.decodeFiles(def, v, read)
		case "balancer":
			d.decodeBalancer(def, v)
		}
	})
	return def, d.errs
}

var yamlErrRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblem reports whether msg is one of yaml.v3's parser errors,
// whose line numbers it reports 0-based (its scanner errors are 1-based).
// internal/cluster reads cluster.yaml's syntax errors the same way.
func yamlParserProblem(msg string) bool {
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

// yamlSyntaxError turns yaml.v3's "yaml: line N: msg" into an Error at
// that line, its column the line's first non-blank.
func yamlSyntaxError(file string, src []byte, err error) *Error {
	e := &Error{File: file, Msg: "YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: "),
		Fix: "check the indentation (spaces, not tabs) and quote values that contain ': ', ' #' or {{"}
	e.Line = 1 // yaml.v3 names no line for problems on the first
	if m := yamlErrRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "YAML syntax error: " + m[2]
		if yamlParserProblem(m[2]) {
			e.Line++
		}
	}
	lines := strings.Split(string(src), "\n")
	if e.Line >= 1 && e.Line <= len(lines) {
		text := lines[e.Line-1]
		e.Column = len(text) - len(strings.TrimLeft(text, " \t")) + 1
		if strings.HasPrefix(strings.TrimLeft(text, " "), "\t") {
			e.Fix = "indent with spaces; YAML does not allow tabs"
		}
	}
	return e
}

// parseYAML reads one YAML document; yaml.v3 has panicked on malformed
// input before, and a bad role file must be an error, never a crash.
func parseYAML(file string, src []byte) (doc *yaml.Node, e *Error) {
	defer func() {
		if r := recover(); r != nil {
			doc, e = nil, &Error{File: file, Msg: fmt.Sprintf("cannot parse the file: %v", r), Fix: "check the YAML syntax"}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.DocumentNode}, nil
		}
		return nil, yamlSyntaxError(file, src, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlSyntaxError(file, src, err)
	default:
		return nil, &Error{File: file, Line: extra.Line, Column: 1, Msg: "the file holds more than one YAML document", Fix: "keep the role in one document: remove the second ---"}
	}
	return doc, nil
}

func (d *decoder) decodeVars(def *definition, v *yaml.Node) {
	d.mapping(v, "vars", nil, func(name string, k, v *yaml.Node) {
		if !varRE.MatchString(name) {
			d.errAt(k, "use letters, digits and _ (templates write {{.Vars.NAME}})", "var name %q is not a plain name", name)
			return
		}
		str, _, ok := d.scalar(v, "var "+name, name+": default-value")
		if !ok {
			def.vars[name] = varDef{required: true}
			return
		}
		def.vars[name] = varDef{def: str}
	})
}

func (d *decoder) decodePackages(def *definition, v *yaml.Node) {
	for _, item := range d.list(v, "packages", "packages: [nginx-light|nginx-core]") {
		str, n, ok := d.scalar(item, "a package", "nginx-light|nginx-core")
		if !ok {
			continue
		}
		var alts []string
		bad := false
		for _, alt := range strings.Split(str, "|") {
			alt = strings.TrimSpace(alt)
			if !packageRE.MatchString(alt) {
				d.errAt(n, "write Debian package names, alternatives separated by |, e.g. nginx-light|nginx-core", "%q is not a package name", alt)
				bad = true
				break
			}
			alts = append(alts, alt)
		}
		if !bad {
			def.packages = append(def.packages, alts)
		}
	}
}

func (d *decoder) decodeMounts(def *definition, v *yaml.Node) {
	d.mapping(v, "mounts", nil, func(vol string, k, v *yaml.Node) {
		if !nameRE.MatchString(vol) {
			d.errAt(k, "name a volume of cluster.yaml (lower-case letters, digits, -)", "%q is not a volume name", vol)
			return
		}
		m := mountDef{readOnly: true}
		var pathNode *yaml.Node
		d.mapping(v, "mount "+vol, mountKeys, func(key string, k, v *yaml.Node) {
			switch key {
			case "path":
				var str string
				var ok bool
				if str, pathNode, ok = d.scalar(v, "path", "path: /srv/"+vol); ok {
					if !strings.HasPrefix(str, "/") || path.Clean(str) != str || str == "/" || strings.ContainsAny(str, " \t\r\n\x00\\\"'%") {
						d.errAt(pathNode, "write an absolute, clean path below / without spaces or quotes, e.g. /srv/"+vol, "mount point %q is not an absolute clean path without spaces", str)
						return
					}
					m.path = str
				}
			case "mode":
				if str, n, ok := d.scalar(v, "mode", "mode: ro"); ok {
					switch str {
					case "ro":
						m.readOnly = true
					case "rw":
						m.readOnly = false
					default:
						d.errAt(n, "write ro or rw", "mount mode %q is not ro or rw", str)
					}
				}
			}
		})
		if m.path == "" {
			if pathNode == nil {
				d.errAt(k, "add path: /srv/"+vol, "mount %s has no path", vol)
			}
			return
		}
		def.mounts[vol] = m
	})
}

func (d *decoder) decodeUnits(def *definition, v *yaml.Node) {
	d.mapping(v, "units", nil, func(name string, k, v *yaml.Node) {
		switch {
		case !unitNameRE.MatchString(name) || len(name) > 255:
			d.errAt(k, "write a systemd unit name with its type, e.g. nginx.service", "%q is not a unit name", name)
			return
		case strings.HasPrefix(name, "pictl-role-") || name == agentUnit || strings.HasSuffix(name, ".mount"):
			d.errAt(k, "pictl writes the role's target, its mounts (under mounts:) and the agent; name another unit",
				"unit %s is pictl's own", name)
			return
		}
		u := &unitDef{}
		def.units[name] = u
		d.mapping(v, "unit "+name, unitKeys, func(key string, k, v *yaml.Node) {
			switch key {
			case "mounts":
				u.mountsAt = &Error{File: d.file, Line: v.Line, Column: v.Column}
				for _, item := range d.list(v, "mounts", "mounts: [www]") {
					if str, _, ok := d.scalar(item, "a volume", "www"); ok {
						u.mounts = append(u.mounts, str)
					}
				}
			case "shared":
				u.shared, _ = d.boolean(v, "shared")
			case "dropin":
				u.dropin = d.decodeSections(v, "dropin of "+name)
			case "unit":
				u.unit = d.decodeSections(v, "unit "+name)
				if u.unit == nil {
					d.errAt(v, "write its sections, e.g. Service: [ExecStart=/usr/bin/true]", "unit %s is empty", name)
				}
			}
		})
	})
}

// decodeSections reads {Section: [Key=value, ...]}, keeping the order of
// sections and lines as written (systemd settings are order-sensitive).
func (d *decoder) decodeSections(v *yaml.Node, what string) []unitSection {
	var out []unitSection
	d.mapping(v, what, nil, func(sec string, k, v *yaml.Node) {
		if !sectionNameRE.MatchString(sec) {
			d.errAt(k, "write a systemd section name: Unit, Service, Socket, Timer, Path, Install or X-...", "%q is not a unit file section", sec)
			return
		}
		s := unitSection{name: sec}
		for _, item := range d.list(v, sec, "[Key=value]") {
			str, n, ok := d.scalar(item, "a setting", "LimitNOFILE=4096")
			if !ok {
				continue
			}
			key, value, found := strings.Cut(str, "=")
			key = strings.TrimSpace(key)
			if !found || !unitKeyRE.MatchString(key) {
				d.errAt(n, "write Key=value, e.g. LimitNOFILE=4096", "%q is not a Key=value setting", str)
				continue
			}
			if strings.ContainsAny(value, "\n") {
				d.errAt(n, "write the setting on one line", "setting %s has a line break", key)
				continue
			}
			if t := d.parseTemplate(n, value); t != nil {
				s.lines = append(s.lines, unitLine{key: key, value: t})
			}
		}
		out = append(out, s)
	})
	return out
}

// reservedFile says whether pictl itself writes p (relative), so a role
// may not.
func reservedFile(p string) bool {
	switch {
	case p == hostnamePath || p == machineIDPath:
		return true
	case p == "etc/pictl" || strings.HasPrefix(p, "etc/pictl/"):
		return true
	case p == unitDir || strings.HasPrefix(p, unitDir+"/"):
		return true
	case p == tmpfilesDir || strings.HasPrefix(p, tmpfilesDir+"/pictl-"):
		return true
	}
	return false
}

// outlivesTarget says whether a file at p configures state that systemd
// applies once at boot and no unit of the role undoes: a role must not
// leave such state behind when its target stops or the node changes role.
func outlivesTarget(p string) (string, bool) {
	for _, dir := range []string{"etc/sysctl.d", "etc/modules-load.d", "etc/modprobe.d", "etc/binfmt.d"} {
		if strings.HasPrefix(p, dir+"/") {
			return "/" + dir, true
		}
	}
	if p == "etc/sysctl.conf" {
		return "/etc/sysctl.conf", true
	}
	return "", false
}

func (d *decoder) decodeFiles(def *definition, v *yaml.Node, read readFunc) {
	d.mapping(v, "files", nil, func(name string, k, v *yaml.Node) {
		rel := strings.TrimPrefix(name, "/")
		if !strings.HasPrefix(name, "/") || checkPath(rel) != nil {
			d.errAt(k, "write an absolute, clean path, e.g. /etc/nginx/conf.d/site.conf", "file %q is not an absolute clean path", name)
			return
		}
		if reservedFile(rel) {
			d.errAt(k, "pictl writes it; put units under units: and tmpfiles lines under tmpfiles:", "file %s is pictl's own", name)
			return
		}
		if dir, ok := outlivesTarget(rel); ok {
			d.errAt(k, "set it from a unit of the role (ExecStart= applies it, ExecStop= undoes it), so that stopping the role's target undoes it",
				"file %s would outlive the role: systemd applies %s at boot, and nothing undoes it when the role's target stops", name, dir)
			return
		}
		f := &fileDef{mode: 0o644}
		sources := 0
		d.mapping(v, "file "+name, fileKeys, func(key string, k, v *yaml.Node) {
			switch key {
			case "template":
				str, n, ok := d.scalar(v, "template", "template: site.conf.tmpl")
				if !ok {
					return
				}
				sources++
				if path.IsAbs(str) || path.Clean(str) != str || strings.HasPrefix(str, "../") || str == ".." {
					d.errAt(n, "name a file beside the role file, e.g. template: site.conf.tmpl", "template %q is not a file of the role's directory", str)
					return
				}
				data, display, err := read(str)
				if err != nil {
					d.errAt(n, "put the file beside the role file or fix the name", "template %s: %v", str, err)
					return
				}
				t, perr := parseTemplateFile(display, string(data))
				if perr != nil {
					d.errs = append(d.errs, perr)
					return
				}
				f.tmpl = t
			case "content":
				str, n, ok := d.scalar(v, "content", "content: |")
				if !ok {
					return
				}
				sources++
				f.tmpl = d.parseTemplate(n, str)
			case "remove":
				f.remove, _ = d.boolean(v, "remove")
				if f.remove {
					sources++
				}
			case "mode":
				str, n, ok := d.scalar(v, "mode", `mode: "0644"`)
				if !ok {
					return
				}
				m, err := strconv.ParseUint(strings.TrimSpace(str), 8, 32)
				if err != nil || m > 0o777 {
					d.errAt(n, `write permission bits in octal, e.g. mode: "0640"`, "mode %q is not octal permission bits", str)
					return
				}
				f.mode = fs.FileMode(m)
			}
		})
		if sources != 1 {
			d.errAt(k, "give exactly one of template:, content: or remove: true", "file %s has %d sources", name, sources)
			return
		}
		def.files[rel] = f
	})
}

func (d *decoder) decodeBalancer(def *definition, v *yaml.Node) {
	b := &balancerDef{check: HealthCheck{Kind: "http", Path: "/", Interval: defaultCheckInterval, Timeout: defaultCheckTimeout}}
	d.mapping(v, "balancer", balancerKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "port":
			str, n, ok := d.scalar(v, "port", "port: 8000")
			if !ok {
				return
			}
			p, err := strconv.ParseUint(strings.TrimSpace(str), 10, 16)
			if err != nil || p == 0 {
				d.errAt(n, "write a port number from 1 to 65535", "balancer port %q is not a port number", str)
				return
			}
			b.port = int(p)
		case "check":
			d.mapping(v, "check", checkKeys, func(key string, k, v *yaml.Node) {
				str, n, ok := d.scalar(v, key, key+": ...")
				if !ok {
					return
				}
				switch key {
				case "type":
					if str != "http" && str != "tcp" {
						d.errAt(n, "write http or tcp", "check type %q is not http or tcp", str)
						return
					}
					b.check.Kind = str
				case "path":
					if !strings.HasPrefix(str, "/") || strings.ContainsAny(str, " \r\n") {
						d.errAt(n, "write a request path, e.g. path: /healthz", "check path %q does not start with /", str)
						return
					}
					b.check.Path = str
				case "interval", "timeout":
					dur, err := time.ParseDuration(strings.TrimSpace(str))
					if err != nil || dur <= 0 {
						d.errAt(n, "write a duration with its unit, e.g. "+key+": 2s", "check %s %q is not a duration", key, str)
						return
					}
					if key == "interval" {
						b.check.Interval = dur
					} else {
						b.check.Timeout = dur
					}
				}
			})
		}
	})
	if b.port == 0 {
		d.errAt(v, "add port: 8000", "the balancer section has no port")
		return
	}
	if b.check.Kind == "tcp" {
		b.check.Path = ""
	}
	def.balancer = b
}
