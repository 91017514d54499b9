package images

import (
	"context"
	"path/filepath"
	"testing"
)

func TestImportDirectoryAndTar(t *testing.T) {
	needTools(t, "tar", "xz")
	src := t.TempDir()
	makeRootTree(t, src)
	want := describeTree(t, src, nil)
	dir := t.TempDir()
	tarball := filepath.Join(dir, "root.tar")
	run(t, "tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", src, "-cpf", tarball, ".")
	run(t, "xz", "-k", "-T2", "-1", tarball)
	run(t, "gzip", "-k", "-1", tarball)

	for _, tc := range []struct{ name, source string }{
		{"directory", src},
		{"tar", tarball},
		{"tar.xz", tarball + ".xz"},
		{"tar.gz", tarball + ".gz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			m, err := s.Import(context.Background(), "root", tc.source, ImportOptions{NoPrepare: true})
			if err != nil {
				t.Fatal(err)
			}
			got := describeTree(t, m.RootDir, nil)
			// Reading the source for the copy may move its atimes.
			compareTrees(t, want, got, true)
			if m.Files != int64(len(want)-1) {
				t.Errorf("Files = %d, want %d", m.Files, len(want)-1)
			}
		})
	}
}
