package images

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newcArchive writes an uncompressed cpio (newc) archive of empty files,
// the format initramfs-tools and dracut produce (before compression).
func newcArchive(names ...string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for i, n := range append(names, "TRAILER!!!") {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			i+1, 0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(n)+1, 0)
		b.WriteString(n)
		b.WriteByte(0)
		pad()
	}
	return b.Bytes()
}

func TestNFSRootSupport(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		verdict string
		why     string
	}{
		{"initramfs-tools", []string{"init", "scripts/nfs", "usr/lib/modules/6.1.0-56-amd64/kernel/fs/nfs/nfs.ko.xz"}, "yes", "initramfs-tools"},
		{"dracut", []string{"init", "usr/lib/dracut/modules.d/95nfs/nfsroot", "lib/modules/6.1/kernel/fs/nfs/nfs.ko.zst"}, "yes", "dracut"},
		{"scripts without module", []string{"init", "scripts/nfs"}, "no", "no nfs.ko"},
		{"hand-made init with module", []string{"init", "lib/modules/nfs.ko", "lib/modules/sunrpc.ko"}, "unknown", "custom /init"},
		{"nothing", []string{"init", "bin/busybox"}, "no", "no NFS boot scripts"},
		{"nfsd is not nfs", []string{"init", "lib/modules/nfsd.ko"}, "no", "no NFS boot scripts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "initrd.img")
			if err := os.WriteFile(p, newcArchive(tt.files...), 0o644); err != nil {
				t.Fatal(err)
			}
			verdict, why := nfsRootSupport(dir, "6.1.0-56-amd64", p, true)
			if verdict != tt.verdict || !strings.Contains(why, tt.why) {
				t.Errorf("got %s (%s), want %s (…%s…)", verdict, why, tt.verdict, tt.why)
			}
		})
	}
}
