package images

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
)

var errTooManyLinks = errors.New("too many levels of symbolic links")

// resolveInRoot returns the host path of p (absolute inside the image)
// following symlinks as a process chrooted at root would: absolute targets
// and ".." never leave root. The final component is followed too; a
// missing component ends resolution there (the result may not exist).
func resolveInRoot(root, p string) (string, error) {
	rel, err := resolveRel(root, p, 0)
	if err != nil {
		return "", err
	}
	if rel == "" {
		return root, nil
	}
	return root + "/" + rel, nil
}

func resolveRel(root, p string, hops int) (string, error) {
	var done []string
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := append(append([]string{}, done...), c)
		host := root + "/" + strings.Join(cur, "/")
		fi, err := os.Lstat(host)
		if err != nil {
			// Missing: keep the remaining path as is.
			done = append(cur, rest...)
			return strings.Join(done, "/"), nil
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = cur
			continue
		}
		hops++
		if hops > 40 {
			return "", fmt.Errorf("%s: %w", p, errTooManyLinks)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		var next string
		if strings.HasPrefix(target, "/") {
			next = target
		} else {
			next = "/" + strings.Join(done, "/") + "/" + target
		}
		next = path.Clean(next) + "/" + strings.Join(rest, "/")
		rest = strings.Split(strings.Trim(path.Clean(next), "/"), "/")
		done = nil
	}
	return strings.Join(done, "/"), nil
}

// readInRoot reads a file at an in-image path.
func readInRoot(root, p string) ([]byte, error) {
	host, err := resolveInRoot(root, p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(host)
}

// resolveParentInRoot resolves every component but the last, which is
// returned as is (so a symlink there is not followed): the path to create,
// replace or remove an entry at.
func resolveParentInRoot(root, p string) (string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return root, nil
	}
	dir, err := resolveInRoot(root, path.Dir(clean))
	if err != nil {
		return "", err
	}
	return dir + "/" + path.Base(clean), nil
}
