package images

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Meta describes an imported image; it is stored as <Dir>/<name>/image.json.
type Meta struct {
	Name string `json:"name"`
	// Source is what was imported (absolute path) and SourceKind how it
	// was read: disk-image, directory or tar.
	Source     string    `json:"source"`
	SourceKind string    `json:"source_kind"`
	Imported   time.Time `json:"imported"`
	// Arch is Debian's name for the architecture of /bin/sh: amd64, arm64,
	// armhf, armel, i386, riscv64 ("" if /bin/sh is missing).
	Arch      string    `json:"arch"`
	OSRelease OSRelease `json:"os_release"`
	// Kernels are the versions under /lib/modules.
	Kernels []string `json:"kernels"`
	// Size is the total content of the root's regular files in bytes
	// (each hard-linked file counted once); Files counts every entry.
	Size  int64 `json:"size"`
	Files int64 `json:"files"`
	// Packages maps installed Debian package names to versions
	// (from /var/lib/dpkg/status; architecture qualifiers dropped).
	Packages map[string]string `json:"packages"`
	Boot     BootInfo          `json:"boot"`
	// Prepared lists the netboot preparation steps applied, in order.
	Prepared []PrepStep `json:"prepared"`
	Updated  time.Time  `json:"updated"`

	// RootDir and BootDir are the absolute paths of the trees; they are
	// filled in when the metadata is loaded, not stored.
	RootDir string `json:"-"`
	BootDir string `json:"-"`
}

// OSRelease holds the fields of /etc/os-release that matter.
type OSRelease struct {
	ID              string `json:"id,omitempty"`
	VersionID       string `json:"version_id,omitempty"`
	VersionCodename string `json:"version_codename,omitempty"`
	PrettyName      string `json:"pretty_name,omitempty"`
}

// HasPackage reports whether the image has the Debian package installed.
func (m *Meta) HasPackage(name string) bool {
	_, ok := m.Packages[name]
	return ok
}

// MissingPackages returns the names in want that the image lacks, so a
// role can say "image rpi-os lacks nginx" before a node boots.
func (m *Meta) MissingPackages(want []string) []string {
	var out []string
	for _, p := range want {
		if !m.HasPackage(p) {
			out = append(out, p)
		}
	}
	return out
}

// collectMeta fills the fields read from the root tree.
func collectMeta(m *Meta, root string) error {
	arch, err := archOf(root)
	if err != nil {
		return err
	}
	m.Arch = arch
	m.OSRelease = osRelease(root)
	m.Kernels = kernelVersions(root)
	pk, err := dpkgPackages(root)
	if err != nil {
		return err
	}
	m.Packages = pk
	return nil
}

// archOf reads the ELF header of the image's /bin/sh.
func archOf(root string) (string, error) {
	p, err := resolveInRoot(root, "/bin/sh")
	if err != nil {
		return "", err
	}
	f, err := elf.Open(p)
	if err != nil {
		if os.IsNotExist(err) {
			return "", nil
		}
		return "", fmt.Errorf("read /bin/sh of the image: %w", err)
	}
	defer f.Close()
	// debug/elf does not expose e_flags (ELF32: bytes 0x24-0x27).
	var flags uint32
	if f.Class == elf.ELFCLASS32 {
		if fh, err := os.Open(p); err == nil {
			hdr := make([]byte, 0x28)
			if n, _ := fh.ReadAt(hdr, 0); n == len(hdr) {
				flags = f.ByteOrder.Uint32(hdr[0x24:])
			}
			fh.Close()
		}
	}
	return debianArch(f, flags), nil
}

const efARMABIFloatHard = 0x400

func debianArch(f *elf.File, flags uint32) string {
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "i386"
	case elf.EM_RISCV:
		if f.Class == elf.ELFCLASS64 {
			return "riscv64"
		}
		return "riscv32"
	case elf.EM_ARM:
		// Hard-float binaries carry EF_ARM_ABI_FLOAT_HARD, or for old EABI
		// versions Debian armhf is still told apart by the interpreter.
		if flags&efARMABIFloatHard != 0 {
			return "armhf"
		}
		if interp := elfInterp(f); strings.Contains(interp, "armhf") {
			return "armhf"
		}
		return "armel"
	case elf.EM_PPC64:
		return "ppc64el"
	case elf.EM_S390:
		return "s390x"
	}
	return strings.ToLower(strings.TrimPrefix(f.Machine.String(), "EM_"))
}

func elfInterp(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil {
				return string(bytes.TrimRight(b, "\x00"))
			}
		}
	}
	return ""
}

func osRelease(root string) OSRelease {
	var b []byte
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if data, err := readInRoot(root, p); err == nil {
			b = data
			break
		}
	}
	var o OSRelease
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `"'`)
		}
		switch k {
		case "ID":
			o.ID = v
		case "VERSION_ID":
			o.VersionID = v
		case "VERSION_CODENAME":
			o.VersionCodename = v
		case "PRETTY_NAME":
			o.PrettyName = v
		}
	}
	return o
}

func kernelVersions(root string) []string {
	seen := map[string]bool{}
	for _, dir := range []string{"/lib/modules", "/usr/lib/modules"} {
		host, err := resolveInRoot(root, dir)
		if err != nil {
			continue
		}
		ents, err := os.ReadDir(host)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				seen[e.Name()] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// dpkgPackages parses /var/lib/dpkg/status for installed packages.
func dpkgPackages(root string) (map[string]string, error) {
	host, err := resolveInRoot(root, "/var/lib/dpkg/status")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(host)
	if os.IsNotExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	var name, version, status string
	flush := func() {
		if name != "" && strings.HasSuffix(status, " installed") {
			out[name] = version
		}
		name, version, status = "", "", ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		switch {
		case strings.HasPrefix(line, "Package: "):
			name = strings.TrimSpace(line[len("Package: "):])
		case strings.HasPrefix(line, "Version: "):
			version = strings.TrimSpace(line[len("Version: "):])
		case strings.HasPrefix(line, "Status: "):
			status = strings.TrimSpace(line[len("Status: "):])
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read dpkg status: %w", err)
	}
	return out, nil
}

// countTree walks root (without following symlinks) for Size and Files.
func countTree(root string) (size, files int64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		files++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := statOf(fi); ok && st.Nlink > 1 {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			size += fi.Size()
		}
		return nil
	})
	return size, files, err
}

func statOf(fi fs.FileInfo) (*syscall.Stat_t, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}
