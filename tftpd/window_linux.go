package tftpd

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// canSteer: the kernel can steer requests between the two servers.
const canSteer = true

// reusePort is a net.ListenConfig Control function.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	return nil
}

// attachSteering replaces the reuseport group's program through conn, a
// member of the group.
func attachSteering(conn *net.UDPConn, prog []bpf.RawInstruction) error {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("tftpd: steering program: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return fmt.Errorf("tftpd: steering program: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("tftpd: attach steering program (SO_ATTACH_REUSEPORT_CBPF): %w", serr)
	}
	return nil
}
