// Command vmctl exposes the test/vm harness to scripts (make demo, manual
// debugging): prepare the cached kernel and initramfs, build a busybox
// rootfs, boot a QEMU guest on an existing namespace and tap.
//
//	vmctl prepare                       # prints VM_VMLINUZ=... shell assignments
//	vmctl rootfs [-checks] [-hold] DIR  # busybox root for an NFS export
//	vmctl boot -netns NS -tap TAP [-pxe | -append ARGS] [-name N] [-mac M] [-timeout D]
//
// boot streams the time-stamped console to stdout, prints the stage table
// at the end and exits 0 only if the guest passed (NETBOOT-OK, no failed
// check). Namespace and tap must exist (ip netns add; ip tuntap add).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pictl/pictl/test/vm"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("vmctl: ")
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare(ctx)
	case "rootfs":
		err = rootfs(os.Args[2:])
	case "boot":
		err = boot(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vmctl prepare | rootfs [-checks] [-hold] DIR | boot -netns NS -tap TAP [-pxe|-kernel K -initrd I -append ARGS] [-name N] [-mac M] [-timeout D]")
	os.Exit(2)
}

func prepare(ctx context.Context) error {
	a, err := vm.Prepare(ctx, vm.Options{Logf: log.Printf})
	if err != nil {
		return err
	}
	log.Printf("prepared in %v (cache %s)", a.PrepareTook.Round(time.Millisecond), a.CacheDir)
	for _, kv := range [][2]string{
		{"VM_KERNEL_RELEASE", a.KernelRelease}, {"VM_KERNEL_DEB", a.KernelDeb},
		{"VM_VMLINUZ", a.Vmlinuz}, {"VM_VMLINUX", a.Vmlinux}, {"VM_INITRD", a.Initrd},
	} {
		fmt.Printf("%s=%s\n", kv[0], kv[1])
	}
	return nil
}

func rootfs(args []string) error {
	fs := flag.NewFlagSet("rootfs", flag.ExitOnError)
	checks := fs.Bool("checks", false, "run the standard filesystem checks at boot")
	hold := fs.Bool("hold", false, "keep running after NETBOOT-OK instead of powering off")
	host := fs.String("hostname", "", "hostname (default netboot-guest)")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	spec := vm.RootfsSpec{Hold: *hold, Hostname: *host}
	if *checks {
		spec.Checks = vm.StandardChecks()
	}
	return vm.BuildRootfs(fs.Arg(0), spec)
}

func boot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boot", flag.ExitOnError)
	m := vm.Machine{Logf: func(format string, a ...any) { fmt.Printf(format+"\n", a...) }}
	pxe := fs.Bool("pxe", false, "boot through the NIC's iPXE ROM (-boot n) instead of -kernel")
	fs.StringVar(&m.Netns, "netns", "", "network namespace QEMU runs in")
	fs.StringVar(&m.Tap, "tap", "", "tap device in that namespace")
	fs.StringVar(&m.Name, "name", "guest", "guest name")
	fs.StringVar(&m.MAC, "mac", "", "NIC MAC (default derived from -name)")
	fs.StringVar(&m.Kernel, "kernel", "", "kernel for direct boot (default: the prepared vmlinux)")
	fs.StringVar(&m.Initrd, "initrd", "", "initrd for direct boot (default: the prepared initramfs)")
	fs.StringVar(&m.Cmdline, "append", "console=ttyS0 panic=-1 quiet", "kernel command line for direct boot")
	fs.DurationVar(&m.Timeout, "timeout", 4*time.Minute, "kill QEMU after this long")
	_ = fs.Parse(args)
	if *pxe {
		m.Mode = vm.PXEBoot
	} else if m.Kernel == "" || m.Initrd == "" {
		a, err := vm.Prepare(ctx, vm.Options{Logf: log.Printf})
		if err != nil {
			return err
		}
		if m.Kernel == "" {
			m.Kernel = a.Vmlinux
		}
		if m.Initrd == "" {
			m.Initrd = a.Initrd
		}
	}
	g, err := vm.Start(ctx, m)
	if err != nil {
		return err
	}
	r := g.Wait()
	fmt.Println(r.Summary())
	if !r.Passed() {
		os.Exit(1)
	}
	return nil
}
