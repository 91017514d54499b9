package tftpd

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var goldenNFS = nfsTarget{Server: netip.MustParseAddr("10.99.0.1"), Port: 20490, Export: "/nodes/pi3"}

func TestRenderCmdline(t *testing.T) {
	node := Node{Name: "pi3", Image: Image{Name: "rpi-os", Kind: ImagePi, Cmdline: "net.ifnames=0"}, Cmdline: "systemd.unit=pictl-web.target"}
	tests := map[string]string{
		"cmdline-bookworm.txt": imageSDCmdline,
		"cmdline-bullseye.txt": "console=serial0,115200 console=tty1 root=PARTUUID=738a4d67-02 rootfstype=ext4 elevator=deadline fsck.repair=yes rootwait quiet init=/usr/lib/raspi-config/init_resize.sh splash plymouth.ignore-serial-consoles\n",
		"cmdline-none.txt":     "",
	}
	for file, image := range tests {
		golden(t, file, renderCmdline(node, goldenNFS, []byte(image)))
	}
}

const bookwormConfigTxt = `# For more options and information see
# http://rptl.io/configtxt

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Run in 64-bit mode
arm_64bit=1

[cm4]
otg_mode=1

[all]`

func TestRenderConfigTxt(t *testing.T) {
	node := Node{Name: "pi3", ConfigTxt: "enable_uart=1\ndtoverlay=disable-wifi  \n"}
	out, ok := renderConfigTxt(node, []byte(bookwormConfigTxt), true)
	if !ok {
		t.Fatal("not rendered")
	}
	golden(t, "config.txt", out)

	// No overrides: the image's file, byte for byte.
	out, ok = renderConfigTxt(Node{Name: "pi3"}, []byte(bookwormConfigTxt), true)
	if !ok || string(out) != bookwormConfigTxt {
		t.Errorf("without overrides got %q, %v", out, ok)
	}
	// Neither: not found, the firmware keeps its defaults.
	if _, ok := renderConfigTxt(Node{Name: "pi3"}, nil, false); ok {
		t.Error("rendered a config.txt from nothing")
	}
	// Overrides without an image file.
	out, _ = renderConfigTxt(node, nil, false)
	golden(t, "config-overrides-only.txt", out)
}

func TestRenderIPXE(t *testing.T) {
	node := Node{
		Name:    "vm1",
		Image:   Image{Name: "debian-x86", Kind: ImageKernelInitrd, Cmdline: "console=ttyS0 quiet"},
		Cmdline: "pxequick",
	}
	nfs := nfsTarget{Server: netip.MustParseAddr("10.99.0.1"), Port: 2049, Export: "/nodes/vm1"}
	out, err := renderIPXE(node, nfs)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "boot.ipxe", out)

	node.Image.Kernel, node.Image.Initrd = "x86/vmlinuz-6.1", "x86/initrd.img-6.1"
	out, err = renderIPXE(node, nfs)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "boot-subdir.ipxe", out)

	for _, bad := range []string{"../vmlinuz", "/boot/vmlinuz", "vm linuz", "${x}"} {
		node.Image.Kernel = bad
		if _, err := renderIPXE(node, nfs); err == nil {
			t.Errorf("kernel name %q accepted", bad)
		}
	}
}

func TestNFSTargetIPv6(t *testing.T) {
	got := nfsTarget{Server: netip.MustParseAddr("fd99::1"), Export: "/nodes/a"}.hostExport()
	if got != "[fd99::1]:/nodes/a" {
		t.Errorf("got %q", got)
	}
}

func TestStageOf(t *testing.T) {
	pi := Image{Kind: ImagePi}
	x86 := Image{Kind: ImageKernelInitrd, Kernel: "k/linux", Initrd: "k/ramdisk"}
	tests := []struct {
		img  Image
		path string
		want Stage
	}{
		{pi, "bootcode.bin", StageFirmware},
		{pi, "start4.elf", StageFirmware},
		{pi, "start_cd.elf", StageFirmware},
		{pi, "fixup4cd.dat", StageFirmware},
		{pi, "recovery.elf", StageFirmware},
		{pi, "config.txt", StageConfig},
		{pi, "cmdline.txt", StageConfig},
		{pi, "autoboot.txt", StageConfig},
		{pi, "bcm2711-rpi-4-b.dtb", StageDTB},
		{pi, "overlays/vc4-kms-v3d.dtbo", StageDTB},
		{pi, "kernel8.img", StageKernel},
		{pi, "kernel_2712.img", StageKernel},
		{pi, "initramfs8", StageInitrd},
		{pi, "bootsig.bin", ""},
		{pi, "pieeprom.upd", ""},
		{pi, "overlays/README", ""},
		{x86, "boot.ipxe", StageIPXE},
		{x86, "k/linux", StageKernel},
		{x86, "k/ramdisk", StageInitrd},
	}
	for _, tt := range tests {
		got, ok := stageOf(tt.img, tt.path)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("stageOf(%s) = %q, %v; want %q", tt.path, got, ok, tt.want)
		}
	}
}

// TestDefaultConsoles: serial0 is a Raspberry Pi firmware alias; a PC or
// QEMU node needs ttyS0 and tty0 to have any console (issue 18, row 8).
func TestDefaultConsoles(t *testing.T) {
	nfs := nfsTarget{Server: netip.MustParseAddr("10.99.0.1"), Port: 2049, Export: "/nodes/n"}
	tests := []struct {
		name string
		img  Image
		want string // the consoles, in order
		not  string // a console that must not appear
	}{
		{"pi arm64", Image{Kind: ImagePi, Arch: "arm64"}, "console=serial0,115200 console=tty1", "ttyS0"},
		{"pi unknown arch", Image{Kind: ImagePi}, "console=serial0,115200 console=tty1", "ttyS0"},
		{"amd64 ipxe", Image{Kind: ImageKernelInitrd, Arch: "amd64"}, "console=tty0 console=ttyS0,115200", "serial0"},
		{"i386 ipxe", Image{Kind: ImageKernelInitrd, Arch: "i386"}, "console=tty0 console=ttyS0,115200", "serial0"},
		{"unknown arch ipxe", Image{Kind: ImageKernelInitrd}, "console=tty0 console=ttyS0,115200", "serial0"},
		{"amd64 pi-style boot dir", Image{Kind: ImagePi, Arch: "amd64"}, "console=tty0 console=ttyS0,115200", "serial0"},
		{"arm64 ipxe", Image{Kind: ImageKernelInitrd, Arch: "arm64"}, "", "serial0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := Node{Name: "n", Image: tt.img}
			var line string
			if tt.img.Kind == ImagePi {
				line = string(renderCmdline(n, nfs, []byte("console=serial0,115200 root=/dev/mmcblk0p2")))
			} else {
				out, err := renderIPXE(n, nfs)
				if err != nil {
					t.Fatal(err)
				}
				line = string(out)
			}
			var got []string
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "console=") && !slices.Contains(got, f) {
					got = append(got, f)
				}
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("consoles %q, want %q in:\n%s", got, tt.want, line)
			}
			if tt.not != "" && strings.Contains(line, tt.not) {
				t.Errorf("%q in:\n%s", tt.not, line)
			}
		})
	}
}
