package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// socketBuffers is what growSocketBuffers did to one process's sockets.
type socketBuffers struct {
	sockets       int
	before, after int // SO_RCVBUF as the kernel reports it (twice what was set)
	err           error
}

func (b socketBuffers) String() string {
	if b.err != nil {
		return "not enlarged: " + b.err.Error()
	}
	return fmt.Sprintf("%d sockets, SO_RCVBUF %d → %d", b.sockets, b.before, b.after)
}

// growSocketBuffers sets SO_RCVBUFFORCE to size on every socket process
// pid opens during its first second, through a duplicate of each
// descriptor (pidfd_getfd, Linux 5.6+; root): the setting is on perfdhcp's
// own sockets, so no sysctl changes and nothing else on the machine is
// affected. (net.core.rmem_default is per network namespace on recent
// kernels but read-only outside the initial one, and perfdhcp has no
// option for its socket buffer.)
func growSocketBuffers(ctx context.Context, pid, size int) socketBuffers {
	var res socketBuffers
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		res.err = fmt.Errorf("pidfd_open: %w", err)
		return res
	}
	defer unix.Close(pidfd)
	done := map[int]bool{}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			break // exited
		}
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil || done[n] {
				continue
			}
			target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			done[n] = true
			fd, err := unix.PidfdGetfd(pidfd, n, 0)
			if err != nil {
				res.err = fmt.Errorf("pidfd_getfd: %w", err)
				return res
			}
			if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil && typ == unix.SOCK_DGRAM {
				res.before, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
				if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
					res.err = fmt.Errorf("SO_RCVBUFFORCE: %w", err)
				}
				res.after, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
				res.sockets++
			}
			unix.Close(fd)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res.sockets == 0 && res.err == nil {
		res.err = fmt.Errorf("no UDP socket seen in process %d", pid)
	}
	return res
}
