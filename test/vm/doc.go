// Package vm is the QEMU netboot harness of pictl's integration and
// end-to-end tests: it prepares a Debian kernel and a busybox initramfs
// (cached), builds busybox root filesystems whose /sbin/init runs a test's
// checks, creates a private network (namespace, bridge, taps) and boots
// guests under QEMU (TCG) either directly (-kernel) or through the real
// PXE path (SeaBIOS → iPXE ROM → DHCP → TFTP), parsing the serial console
// into a Result. It follows ../shared/reference/netboot-e2e-recipe.md.
//
// # A test in five steps
//
//	func TestNodeRoot(t *testing.T) {
//		n := vm.NewNet(t, "nfsd")            // skips unless root + QEMU; br0 = 10.99.0.1/24
//		a := vm.PrepareT(t)                   // kernel + initramfs, cached in .cache/vm
//		img := t.TempDir()
//		if err := vm.BuildRootfs(img, vm.RootfsSpec{
//			Checks: append(vm.StandardChecks(), vm.Check{Name: "setuid", Script: `test -u /bin/su`}),
//			Script: `wait_host restart && chk after-restart 'ls /bin >/dev/null'`,
//		}); err != nil {
//			t.Fatal(err)
//		}
//		srv := startMyServer(t, n)            // open sockets inside n.NS.Do, serve from any goroutine
//		r := n.Boot(t, vm.Machine{
//			Name: "node1", Kernel: a.Vmlinux, Initrd: a.Initrd,
//			Cmdline: vm.KernelArgs{NFSRoot: "10.99.0.1:/nodes/node1",
//				Static: n.GuestAddr(0), Server: n.Host()}.String(),
//			OnWait: func(ctx context.Context, name string) error { return srv.Restart(ctx) },
//		})
//		vm.RequirePassed(t, r)                // on failure: summary, stage table, console tail
//		t.Log(r.StageTable())
//	}
//
// Several guests boot one after another with several n.Boot calls, or at
// once with n.Start (each gets its own tap) and Guest.Wait.
//
// # Guest protocol (serial console)
//
//	PXE-STAGE NAME [uptime=U] [detail]   stage reached (iPXE script, initramfs, init)
//	PXE-FAIL reason                      the initramfs gave up (QEMU powers off)
//	CHECK ok NAME | CHECK FAIL NAME: why | CHECK XFAIL NAME: why
//	PXE-WAIT NAME                        guest waits; the harness calls Machine.OnWait
//	                                     and answers "PXE-GO NAME" (or "PXE-ABORT NAME")
//	NETBOOT-OK checks_ok=N checks_failed=M checks_xfail=K uptime=U
//
// Markers are found anywhere in a line, several per line if need be: the
// kernel resets the UART while iPXE's last output may still be in flight,
// so iPXE's final "PXE-STAGE ipxe-downloaded" is sometimes cut short and runs
// into the initramfs's first marker. Do not require stages iPXE prints last.
//
// The final marker is followed by `poweroff -f`, which ends QEMU (-no-reboot, panic=-1). A guest
// passes when NETBOOT-OK reports no failed check and QEMU exits 0 within
// Machine.Timeout; a guest that prints no marker (a systemd image) can use
// Machine.StopWhen instead. Machine.OnLine sees every line and may answer
// with Guest.Send.
//
// # Initramfs
//
// scripts/build-initramfs.sh (embedded; the cache key includes its hash):
// busybox, virtio_net/e1000 and the NFSv3 client modules resolved from each
// module's depends=, udhcpc. It takes a static address from ip= (kernel
// style) or pxeip=/pxegw=, else does DHCP (option 60 "pxe-e2e-initrd",
// asks for option 17), then mounts nfsroot= (else DHCP option 17, else
// SERVER:/) with vers=3,proto=tcp,port=P,mountport=P,mountproto=tcp,nolock,
// noacl,addr=SERVER — go-nfs style servers need no portmapper — and
// switch_roots to /sbin/init with PXE_* variables describing the mount.
//
// # What the DHCP server must answer for PXEBoot
//
// QEMU's iPXE ROM (Debian ipxe-qemu) sends option 60
// "PXEClient:Arch:00000:UNDI:002001", 93 = 0 (BIOS x86), 77 = "iPXE" (raw,
// not RFC 3004 length-prefixed) and option 175 (iPXE features). Recognise
// iPXE by the presence of 175 (or 77 == "iPXE"), not by option 60 alone (a
// Raspberry Pi bootloader sends the same option 60). The answer that works:
//
//   - yiaddr, siaddr = next-server = the TFTP server, options 54 (server
//     id), 51 (lease time), 1 (netmask), 3 (router, optional);
//   - file / option 67 = "boot.ipxe" (an iPXE script, see IPXEScript);
//   - option 175 with sub-option 176 = 1 (encapsulated bytes b0 01 01,
//     "no-pxedhcp"): without it iPXE waits ~3 s for ProxyDHCP offers;
//   - no option 17 for iPXE (it ignores it and says so); give the root path
//     to the initramfs's DHCP request (option 60 "pxe-e2e-initrd") instead,
//     or put nfsroot= in boot.ipxe;
//   - no ping/ARP probe before offering (costs ~3 s per new client);
//   - replies broadcast to 255.255.255.255:68 while the client has no
//     address (insomniacslk/dhcp's server4 peer is 0.0.0.0:68 then).
//
// And on the same link an IPv6 router advertisement answering iPXE's router
// solicitation: iPXE waits for all its configurators, so without one it uses
// its DHCPv4 lease only after ~13 s. Net.StartRouterAdvertiser provides it
// when the server under test does not. TFTP must serve boot.ipxe and the
// files it names with tsize and blksize (iPXE asks for blksize 1432).
// boot.ipxe's kernel line needs "console=ttyS0 panic=-1 no_timer_check"
// besides nfsroot=/nfsport= (KernelArgs renders all of it): without the
// console nothing after iPXE reaches the harness, without panic=-1 a failed
// boot hangs until the timeout, and without no_timer_check a loaded host
// occasionally panics the guest in the IO-APIC timer check.
//
// Timings under TCG on the project's 2-core machine: direct boot of the PVH
// vmlinux to NETBOOT-OK ~5-6 s for a marker-only init (~9.5 s with
// StandardChecks); PXE to NETBOOT-OK ~15-17 s (bzImage decompression under
// TCG is ~5 s of it). Run boots one at a time where possible: parallel
// guests slow each other down on 2 cores.
//
// # Environment
//
//	PICTL_TEST_CACHE        artefact cache (default <repo>/.cache/vm)
//	PICTL_TEST_KERNEL_PKG   kernel package (default: linux-image-amd64's dependency)
//	PICTL_TEST_VM_LOGDIR    write each guest's time-stamped console there
//	PICTL_TEST_VM_VERBOSE   stream console lines to the test log
//	PICTL_TEST_ACCEL        QEMU accelerator (default tcg; kvm_pvm hosts cannot run KVM guests)
package vm
