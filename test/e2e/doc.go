// Package e2e proves pictl's boot path the way a user meets it: QEMU
// guests netboot from `pictl serve` alone — DHCP (full or proxy), the iPXE
// script and kernel + initrd over TFTP, the node's root over NFS — inside a
// private network namespace, with the cluster written, the image imported
// and the nodes declared by the pictl CLI.
//
// The tests (e2e_test.go) need root, QEMU and the artefacts of test/vm;
// they skip otherwise. Run them with
//
//	go test -count=1 -v ./test/e2e/
//
// The non-test files are shared with the demo (test/demo): building the
// pictl binary, laying out an importable image directory, running and
// stopping `pictl serve` inside a namespace, and reading a PXE boot's stage
// timings off the guest console.
//
// # Images
//
// The busybox image is a test/vm root filesystem with the harness's cached
// Debian kernel and busybox initramfs placed as /boot/vmlinuz-REL and
// /boot/initrd.img-REL, which is where pictl's image import looks for an
// x86 image's boot files. The initramfs understands the kernel-style
// root=/dev/nfs nfsroot=SERVER:/path,options arguments of the boot.ipxe
// pictl renders.
//
// The Debian image is `debootstrap --variant=minbase
// --include=systemd-sysv,udev bookworm` (cached under .cache/e2e, built on first use from apt's mirror)
// with the same kernel and initramfs and a unit that prints the harness's
// markers once multi-user.target is reached.
//
// # Environment
//
//	PICTL_E2E_CACHE      cache for the Debian tree (default <repo>/.cache/e2e)
//	PICTL_E2E_NO_DEBIAN  set to skip the Debian boot
//	PICTL_E2E_KEEP       keep the state directory and logs of each test (printed)
//
// and those of test/vm (PICTL_TEST_CACHE, PICTL_TEST_VM_VERBOSE, ...).
package e2e
