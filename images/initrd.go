package images

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// nfsRootSupport decides whether a kernel + initrd pair can mount an NFS
// root: the kernel may have NFS root built in (CONFIG_ROOT_NFS=y with IP
// autoconfiguration), or the initrd may carry NFS boot scripts and the
// nfs module.
func nfsRootSupport(root, version, initrdPath string, hasInitrd bool) (verdict, why string) {
	cfg := kernelConfig(root, version)
	if cfg["CONFIG_ROOT_NFS"] == "y" && cfg["CONFIG_IP_PNP"] == "y" && cfg["CONFIG_NFS_FS"] == "y" {
		return "yes", "kernel " + version + " has NFS root and IP autoconfiguration built in"
	}
	if !hasInitrd {
		if len(cfg) == 0 {
			return "unknown", "no initrd and no /boot/config-" + version + " to tell whether the kernel has NFS root built in"
		}
		return "no", "no initrd, and kernel " + version + " lacks built-in NFS root (CONFIG_ROOT_NFS/CONFIG_IP_PNP/CONFIG_NFS_FS)"
	}
	names, err := initrdNames(initrdPath)
	if err != nil {
		return "unknown", "cannot read the initrd: " + err.Error()
	}
	var scripts, module string
	for _, n := range names {
		switch {
		case n == "scripts/nfs":
			scripts = "initramfs-tools scripts/nfs"
		case strings.HasSuffix(n, "/nfsroot") || strings.Contains(n, "dracut/modules.d/95nfs"):
			scripts = "dracut nfs module"
		case isNFSModule(n):
			module = "nfs.ko"
		}
	}
	if module == "" && cfg["CONFIG_NFS_FS"] == "y" {
		module = "NFS client built into the kernel"
	}
	switch {
	case scripts != "" && module != "":
		return "yes", "initrd has " + scripts + " and " + module
	case scripts == "" && module != "":
		// A hand-made /init (as in pictl's own tests) may still mount it.
		return "unknown", "initrd has " + module + " but no initramfs-tools or dracut NFS scripts; a custom /init must mount root=/dev/nfs nfsroot=SERVER:/PATH,OPTIONS itself"
	case scripts == "":
		return "no", "initrd has no NFS boot scripts (initramfs-tools: set BOOT=nfs or MODULES=netboot and rebuild with update-initramfs -u)"
	default:
		return "no", "initrd has " + scripts + " but no nfs.ko module"
	}
}

// isNFSModule matches the NFS client module in any initrd layout, compressed
// or not (kernel/fs/nfs/nfs.ko.xz, or a flat lib/modules/nfs.ko).
func isNFSModule(name string) bool {
	base := name[strings.LastIndexByte(name, '/')+1:]
	for _, ext := range []string{"", ".xz", ".zst", ".gz"} {
		if base == "nfs.ko"+ext {
			return true
		}
	}
	return false
}

func kernelConfig(root, version string) map[string]string {
	out := map[string]string{}
	b, err := readInRoot(root, "/boot/config-"+version)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = v
		}
	}
	return out
}

// initrdNames lists the paths inside an initrd: a sequence of cpio
// (newc) archives, uncompressed (early microcode) or compressed.
func initrdNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	err = scanCpio(bufio.NewReaderSize(f, 1<<20), &names, 0)
	return names, err
}

func scanCpio(r *bufio.Reader, names *[]string, depth int) error {
	if depth > 3 {
		return fmt.Errorf("initrd nested too deep")
	}
	for {
		// Archives may be separated by zero padding.
		for {
			b, err := r.Peek(1)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if b[0] != 0 {
				break
			}
			r.Discard(1)
		}
		head, err := r.Peek(6)
		if err != nil {
			return nil
		}
		if string(head) != "070701" && string(head) != "070702" {
			comp := sniffCompression(head)
			if comp == compNone {
				return fmt.Errorf("unknown initrd segment starting %x", head)
			}
			dr, closeFn, err := goDecompressor(comp, r)
			if err != nil {
				return err
			}
			defer closeFn()
			return scanCpio(bufio.NewReaderSize(dr, 1<<20), names, depth+1)
		}
		if err := scanOneCpio(r, names); err != nil {
			return err
		}
	}
}

func scanOneCpio(r *bufio.Reader, names *[]string) error {
	hdr := make([]byte, 110)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return fmt.Errorf("cpio header: %w", err)
		}
		if string(hdr[:5]) != "07070" {
			return fmt.Errorf("bad cpio magic %q", hdr[:6])
		}
		field := func(i int) int64 {
			v, _ := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			return int64(v)
		}
		size := field(6)
		nameSize := field(11)
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(r, name); err != nil {
			return err
		}
		pad := (4 - (110+nameSize)%4) % 4
		r.Discard(int(pad))
		n := string(bytes.TrimRight(name, "\x00"))
		if _, err := r.Discard(int(size)); err != nil {
			return err
		}
		r.Discard(int((4 - size%4) % 4))
		if n == "TRAILER!!!" {
			return nil
		}
		*names = append(*names, strings.TrimPrefix(n, "./"))
	}
}
