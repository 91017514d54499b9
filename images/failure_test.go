package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// assertNothingLeft checks that a failed import left no image, staging
// directory or temporary file behind.
func assertNothingLeft(t *testing.T, s *Store) {
	t.Helper()
	ents, _ := os.ReadDir(s.Dir)
	for _, e := range ents {
		if e.Name() != ".lock-pi" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Errorf("List after failure: %v, %v", l, err)
	}
}

func TestImportFailuresAreNamedAndLeaveNothing(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy", "mkfs.ext4", "xz")
	src, boot := t.TempDir(), t.TempDir()
	makeRootTree(t, src)
	makeBootTree(t, boot)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	makeDiskImage(t, good, src, boot, diskOpts{})
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run(t, "xz", "-k", "-T2", "-1", good)
	xzBytes, _ := os.ReadFile(good + ".xz")

	corruptXZ := append([]byte(nil), xzBytes...)
	for i := len(corruptXZ) / 3; i < len(corruptXZ)/3+64; i++ {
		corruptXZ[i] ^= 0x5a
	}
	// An MBR whose only partition is FAT.
	fatOnly := append([]byte(nil), goodBytes[:512]...)
	for i := 446 + 16; i < 446+32; i++ {
		fatOnly[i] = 0
	}
	fatOnly = append(fatOnly, goodBytes[512:]...)
	// A root filesystem claiming an incompatible feature (encrypt).
	const rootOff = (8192 + 36*1024*2) * 512
	encrypted := append([]byte(nil), goodBytes...)
	encrypted[rootOff+1024+0x60+2] |= 0x01 // s_feature_incompat bit 0x10000
	// Inode table pointer of group 0 aimed past the end.
	badGD := append([]byte(nil), goodBytes...)
	for i := 0; i < 4; i++ {
		badGD[rootOff+4096+8+i] = 0xff
	}

	cases := []struct {
		name    string
		source  string
		want    error
		feature string
	}{
		{"corrupt xz", write("corrupt.img.xz", corruptXZ), ErrCorruptCompression, ""},
		{"truncated xz", write("short.img.xz", xzBytes[:len(xzBytes)/2]), ErrCorruptCompression, ""},
		{"truncated img", write("short.img", goodBytes[:len(goodBytes)-1<<20]), ErrTruncatedImage, ""},
		{"truncated in the middle of the root", write("half.img", goodBytes[:rootOff+4<<20]), ErrTruncatedImage, ""},
		{"no ext4 partition", write("fat-only.img", fatOnly), ErrNoRootPartition, ""},
		{"not a disk image", write("junk.img", make([]byte, 4096)), ErrNoRootPartition, ""},
		{"unsupported feature", write("encrypt.img", encrypted), nil, "encrypt"},
		{"corrupt group descriptors", write("badgd.img", badGD), ErrCorruptImage, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Import(context.Background(), "pi", tc.source, ImportOptions{})
			if err == nil {
				t.Fatal("import succeeded")
			}
			t.Logf("error: %v", err)
			if tc.feature != "" {
				var uf *UnsupportedFeatureError
				if !errors.As(err, &uf) || uf.Feature != tc.feature {
					t.Fatalf("want UnsupportedFeatureError{%s}, got %v", tc.feature, err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			assertNothingLeft(t, s)
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := false
		_, err := s.Import(ctx, "pi", good+".xz", ImportOptions{Progress: func(p Progress) {
			if p.Phase == "extract" && !cancelled {
				cancelled = true
				cancel()
			}
		}})
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("want cancellation, got %v", err)
		}
		assertNothingLeft(t, s)
	})

	t.Run("existing name", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Import(context.Background(), "pi", good, ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Import(context.Background(), "pi", good, ImportOptions{}); !errors.Is(err, ErrExists) {
			t.Fatalf("second import: %v", err)
		}
	})

	t.Run("leftover staging of a killed import is cleaned", func(t *testing.T) {
		s := newStore(t)
		os.MkdirAll(filepath.Join(s.Dir, ".staging-old-abc123", "root"), 0o755)
		if _, err := s.Import(context.Background(), "pi", good, ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(s.Dir, ".staging-old-abc123")); !os.IsNotExist(err) {
			t.Fatalf("leftover still there: %v", err)
		}
	})
}
