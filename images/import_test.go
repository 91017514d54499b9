package images

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func newStore(t *testing.T) *Store {
	return &Store{Dir: filepath.Join(t.TempDir(), "images")}
}

func skipLostFound(rel string) bool { return rel == "lost+found" }

func TestImportDiskImagePreservesEverything(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy", "mkfs.ext4", "xz")
	src, boot := t.TempDir(), t.TempDir()
	makeRootTree(t, src)
	makeBootTree(t, boot)
	want := describeTree(t, src, nil)

	for _, tc := range []struct {
		name string
		opts diskOpts
		comp string
	}{
		{"ext4", diskOpts{}, ""},
		{"ext4-xz-tool", diskOpts{}, "xz"},
		{"ext4-xz-go", diskOpts{}, "xz-go"},
		{"ext4-gz", diskOpts{}, "gz"},
		{"ext4-zst", diskOpts{}, "zst"},
		{"ext4-inline-data-1k", diskOpts{features: []string{"inline_data"}, blockKB: 1}, ""},
		{"ext4-no-64bit-meta-bg", diskOpts{features: []string{"^64bit,^resize_inode,meta_bg"}}, ""},
		{"ext2-block-maps", diskOpts{mkfs: "mkfs.ext2"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "pi.img")
			// mkfs.ext4 -d stores whole seconds; give one file nanoseconds
			// (123456789 << 2 | epoch bits 0) to see them come through.
			tc.opts.debugfs = append(tc.opts.debugfs, "sif /data/big mtime_extra 0x1d6f3454")
			makeDiskImage(t, img, src, boot, tc.opts)
			opt := ImportOptions{NoPrepare: true}
			switch tc.comp {
			case "xz", "xz-go":
				run(t, "xz", "-T2", "-1", img)
				img += ".xz"
				opt.NoTool = tc.comp == "xz-go"
			case "gz":
				run(t, "gzip", "-1", img)
				img += ".gz"
			case "zst":
				run(t, "zstd", "-q", "--rm", img)
				img += ".zst"
			}
			s := newStore(t)
			m, err := s.Import(context.Background(), "pi", img, opt)
			if err != nil {
				t.Fatal(err)
			}
			got := describeTree(t, m.RootDir, skipLostFound)
			w := asMkfsStores(want)
			big := w["data/big"]
			big.Mtime += 123456789
			w["data/big"] = big
			compareTrees(t, w, got, true)
			bootWant := []string{"config.txt", "cmdline.txt", "start4.elf", "kernel8.img", "bcm2711-rpi-4-b.dtb", "overlays/vc4-kms-v3d.dtbo"}
			for _, f := range bootWant {
				a, _ := os.ReadFile(filepath.Join(boot, f))
				b, err := os.ReadFile(filepath.Join(m.BootDir, f))
				if err != nil || string(a) != string(b) {
					t.Errorf("boot/%s: %v (equal=%v)", f, err, string(a) == string(b))
				}
			}
			if ents, _ := os.ReadDir(s.Dir); len(ents) != 2 { // pi and .lock-pi
				t.Errorf("store holds %v", ents)
			}
		})
	}
}
