package tftpd

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// pin/tftp opens a new UDP socket for every transfer, on the goroutine that
// reads requests. A socket lands in the network namespace of the thread that
// creates it, so when Listen ran inside a namespace (tests, benchmarks) the
// request loop must run on a thread in that same namespace. Listen keeps a
// handle on its namespace; runInNetns enters it on a locked thread.

func currentNetns() (*os.File, error) {
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return f, nil
}

// runInNetns runs fn on a thread in the namespace ns refers to. If the
// thread had to switch, it stays locked so the runtime discards it when the
// goroutine ends rather than reusing it elsewhere.
func runInNetns(ns *os.File, fn func() error) error {
	runtime.LockOSThread()
	same, err := sameNetns(ns)
	if err != nil || same {
		runtime.UnlockOSThread()
		if err != nil {
			return err
		}
		return fn()
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter the listening network namespace: %w", err)
	}
	return fn()
}

func sameNetns(ns *os.File) (bool, error) {
	var want, have unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &want); err != nil {
		return false, fmt.Errorf("stat network namespace: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &have); err != nil {
		return false, fmt.Errorf("stat own network namespace: %w", err)
	}
	return want.Dev == have.Dev && want.Ino == have.Ino, nil
}
