// Command archprobe stands in for /bin/sh in the foreign-arch image exec
// test. Built for arm64, it runs on an x86 host only through
// qemu-user-static's binfmt handler, and reports what it saw inside the
// image's chroot.
//
//	archprobe [-exit N] [FILE]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	args := os.Args[1:]
	if len(args) == 2 && args[0] == "-exit" {
		n, _ := strconv.Atoi(args[1])
		os.Exit(n)
	}
	fmt.Println("goarch", runtime.GOARCH)
	var u syscall.Utsname
	if err := syscall.Uname(&u); err == nil {
		var m []byte
		for _, c := range u.Machine {
			if c == 0 {
				break
			}
			m = append(m, byte(c))
		}
		fmt.Println("machine", string(m))
	}
	// /proc/self/mounts lists the mounts below the process's root, with
	// paths relative to it.
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == "/proc" && f[2] == "proc" {
				fmt.Println("proc mounted")
			}
		}
	} else {
		fmt.Println("proc:", err)
	}
	if len(args) == 1 {
		if err := os.WriteFile(args[0], []byte("written by "+runtime.GOARCH+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
