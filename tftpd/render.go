package tftpd

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Names of the files rendered per node rather than read from the image.
const (
	CmdlineTxt = "cmdline.txt"
	ConfigTxt  = "config.txt"
	BootIPXE   = "boot.ipxe"
)

// errNoServerAddr: nfsroot= needs an address and none is configured nor
// known from the request.
var errNoServerAddr = errors.New("no NFS server address: set Config.NFSServer")

// nfsTarget is where a node's root lives.
type nfsTarget struct {
	Server netip.Addr
	Port   uint16
	Export string
}

func (t nfsTarget) hostExport() string {
	host := t.Server.String()
	if t.Server.Is6() && !t.Server.Is4In6() {
		host = "[" + host + "]"
	}
	return host + ":" + t.Export
}

// kernelArgs mount the node's root the kernel's way (Documentation/
// admin-guide/nfs/nfsroot.rst), which Raspberry Pi OS kernels and
// initramfs-tools' boot=nfs both read. go-nfs serves MOUNT on the NFS port
// and has no portmapper or NLM, hence port=, mountport= and nolock.
func (t nfsTarget) kernelArgs() []string {
	port := strconv.Itoa(int(t.Port))
	return []string{
		"root=/dev/nfs",
		"nfsroot=" + t.hostExport() + ",vers=3,tcp,port=" + port + ",mountport=" + port + ",nolock",
		"rw", "ip=dhcp", "rootwait",
	}
}

func exportOf(n Node) string {
	if n.NFSExport != "" {
		return n.NFSExport
	}
	return "/nodes/" + n.Name
}

// renderCmdline builds a Raspberry Pi node's cmdline.txt: the NFS root
// arguments, what the image's own cmdline.txt adds that still makes sense on
// an NFS root, then the image's and the node's extra arguments (later
// arguments win in the kernel, so node extras override).
func renderCmdline(n Node, nfs nfsTarget, imageCmdline []byte) []byte {
	args := append(defaultConsoles(n.Image), nfs.kernelArgs()...)
	for _, a := range strings.Fields(string(imageCmdline)) {
		if keepImageArg(a) {
			args = append(args, a)
		}
	}
	args = append(args, strings.Fields(n.Image.Cmdline)...)
	args = append(args, strings.Fields(n.Cmdline)...)
	return []byte(strings.Join(args, " ") + "\n")
}

// defaultConsoles are the consoles a node gets unless its image or node
// arguments add others (the kernel keeps every console=, the last one
// becomes /dev/console). serial0 is an alias only the Raspberry Pi firmware
// defines; a PC or QEMU guest has ttyS0 and a VGA console tty0 instead.
func defaultConsoles(img Image) []string {
	if isPC(img) {
		return []string{"console=tty0", "console=ttyS0,115200"}
	}
	if img.Kind == ImageKernelInitrd {
		// An iPXE-booted non-PC machine: no console name is known to
		// exist on it, so leave the choice to its image or node.
		return nil
	}
	return []string{"console=serial0,115200", "console=tty1"}
}

// isPC: the image is for x86 (an unknown architecture booted by iPXE is
// almost always a PC).
func isPC(img Image) bool {
	switch img.Arch {
	case "amd64", "i386":
		return true
	case "":
		return img.Kind == ImageKernelInitrd
	}
	return false
}

// keepImageArg drops the arguments of an SD-card cmdline.txt that an NFS
// root replaces or that would break it: the root device and its checks, the
// first-boot resize init, and what the NFS arguments above already set.
func keepImageArg(a string) bool {
	key, val, _ := strings.Cut(a, "=")
	switch key {
	case "root", "rootfstype", "fsck.repair", "fsck.mode", "nfsroot", "ip", "console", "rootwait", "rw", "ro":
		return false
	case "init":
		return !strings.Contains(val, "resize") && !strings.Contains(val, "firstboot")
	}
	return true
}

// renderConfigTxt returns the image's config.txt with the node's overrides
// appended in an [all] section (the firmware applies the last setting).
// ok=false when there is neither.
func renderConfigTxt(n Node, image []byte, imageHas bool) (out []byte, ok bool) {
	extra := strings.TrimSpace(n.ConfigTxt)
	if extra == "" {
		return image, imageHas
	}
	var b bytes.Buffer
	b.Write(image)
	if len(image) > 0 && image[len(image)-1] != '\n' {
		b.WriteByte('\n')
	}
	if len(image) > 0 {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "[all]\n# pictl: settings of node %s\n", n.Name)
	for _, line := range strings.Split(extra, "\n") {
		b.WriteString(strings.TrimRight(line, " \t\r"))
		b.WriteByte('\n')
	}
	return b.Bytes(), true
}

// renderIPXE builds the iPXE script of a kernel+initrd node. File names are
// relative, so iPXE resolves them against the script's own URL and asks for
// them under the same prefix (or none): the same route finds the same node.
// The root arguments are those of cmdline.txt, so any initrd that follows
// the kernel's nfsroot= convention finds the node's root.
func renderIPXE(n Node, nfs nfsTarget) ([]byte, error) {
	kernel, initrd := kernelFiles(n.Image)
	for _, f := range []string{kernel, initrd} {
		if c, err := CleanName(f); err != nil || c != f || strings.ContainsAny(f, " $\"'") {
			return nil, fmt.Errorf("image %s: boot file name %q not usable in an iPXE script", n.Image.Name, f)
		}
	}
	args := append([]string{"initrd=" + path.Base(initrd)}, defaultConsoles(n.Image)...)
	args = append(args, nfs.kernelArgs()...)
	args = append(args, strings.Fields(n.Image.Cmdline)...)
	args = append(args, strings.Fields(n.Cmdline)...)
	var b bytes.Buffer
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# pictl: node %s, image %s\n", n.Name, n.Image.Name)
	// Each download is tried twice: a windowed transfer that fails moves
	// the client to lock-step (window.go), so the second try gets through
	// a lossy link.
	kernelCmd := fmt.Sprintf("kernel %s %s", kernel, strings.Join(args, " "))
	fmt.Fprintf(&b, "%s || %s\n", kernelCmd, kernelCmd)
	fmt.Fprintf(&b, "initrd %s || initrd %s\n", initrd, initrd)
	b.WriteString("boot\n")
	return b.Bytes(), nil
}

func kernelFiles(img Image) (kernel, initrd string) {
	kernel, initrd = img.Kernel, img.Initrd
	if kernel == "" {
		kernel = "vmlinuz"
	}
	if initrd == "" {
		initrd = "initrd.img"
	}
	return kernel, initrd
}

// stageOf says which boot stage fetching p (a path in the node's tree)
// marks; ok=false for files that mark none.
func stageOf(img Image, p string) (Stage, bool) {
	if img.Kind == ImageKernelInitrd {
		kernel, initrd := kernelFiles(img)
		switch p {
		case kernel:
			return StageKernel, true
		case initrd:
			return StageInitrd, true
		}
	}
	base := strings.ToLower(path.Base(p))
	ext := path.Ext(base)
	switch {
	case base == BootIPXE:
		return StageIPXE, true
	case base == "bootcode.bin" || base == "recovery.elf" ||
		strings.HasPrefix(base, "start") && ext == ".elf" ||
		strings.HasPrefix(base, "fixup") && ext == ".dat":
		return StageFirmware, true
	case base == ConfigTxt || base == CmdlineTxt || base == "autoboot.txt" || base == "bootcfg.txt":
		return StageConfig, true
	case ext == ".dtb" || ext == ".dtbo":
		return StageDTB, true
	case strings.HasPrefix(base, "kernel") && ext == ".img",
		strings.HasPrefix(base, "vmlinuz"), strings.HasPrefix(base, "vmlinux"),
		base == "bzimage", base == "zimage", base == "image", base == "image.gz":
		return StageKernel, true
	case strings.HasPrefix(base, "initrd"), strings.HasPrefix(base, "initramfs"):
		return StageInitrd, true
	}
	return "", false
}
