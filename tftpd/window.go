package tftpd

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/bpf"
)

// Windowed sending. pin/tftp's lock-step sender waits for each block's ACK
// before sending the next, and the Go runtime's park/wake per block makes it
// ~0.9× tftpd-hpa on one download. Its SetAnticipate sends a window of
// blocks and then collects their ACKs: ~1.6× tftpd-hpa at 8 blocks. But the
// window is not in RFC 1350: a client must take blocks it has not asked for
// yet (iPXE, curl and tftp-hpa do; the Raspberry Pi firmware is not shown
// to), and the library's window only advances on the exact sequence of
// per-block ACKs, so a lost ACK fails the transfer after Retries timeouts
// (a lost DATA block is resent). The library sets the window server-wide,
// before the handler sees the request.
//
// So the server listens twice on one address with SO_REUSEPORT — a
// lock-step pin server (socket 0) and a windowed one (socket 1) — and a
// classic BPF program attached to the reuseport group sends each request to
// one of them by its source address. Only the request goes through the
// shared port; the transfer continues on the chosen server's own socket.
// Windowed are the configured WindowClients, and, for windowTTL after their
// last request, the addresses of nodes whose image boots through iPXE (the
// request for boot.ipxe goes lock-step and teaches the address; the kernel
// and initrd that follow are windowed).
//
// Losses: a client (curl, tftp-hpa, iPXE) re-ACKs only its latest block,
// and the library restarts a window from its first block expecting every
// ACK again, so a lost ACK — or a lost DATA block past the window's second
// — fails the transfer after Retries timeouts. A windowed transfer that
// fails therefore demotes its client to lock-step for windowTTL, overriding
// WindowClients, and boot.ipxe retries each download once: on a lossy link
// an iPXE boot costs Timeout × Retries once and then goes lock-step.

const (
	// windowTTL is how long a learned address stays windowed after its last
	// request: an iPXE boot fetches its files within seconds; an address
	// handed to a Pi later must not inherit the window.
	windowTTL = 10 * time.Minute
	// maxLearned bounds the program: two instructions per learned address,
	// four per prefix, BPF_MAXINSNS 4096.
	maxLearned = 1500
	// skfNetOff is SKF_NET_OFF: a cBPF load at this offset reads from the
	// network header; the reuseport program's data starts at the UDP
	// payload, and the source address is 12 bytes into the IPv4 header.
	skfNetOff = -0x100000
)

// MaxWindowClients is how many Config.WindowClients prefixes the steering
// program holds (four instructions each, beside maxLearned addresses).
const MaxWindowClients = 128

// windowClients is the set of client addresses sent windowed, and the
// steering program built from it.
type windowClients struct {
	static []netip.Prefix
	attach func([]bpf.RawInstruction) error // replaces the group's program

	mu      sync.Mutex
	learned map[netip.Addr]time.Time // → expiry
	demoted map[netip.Addr]time.Time // → expiry; lock-step whatever else says
}

func newWindowClients(static []netip.Prefix) (*windowClients, error) {
	if len(static) > MaxWindowClients {
		return nil, fmt.Errorf("tftpd: %d window client prefixes, at most %d", len(static), MaxWindowClients)
	}
	for _, p := range static {
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("tftpd: window client prefix %s is not IPv4 (the server listens on IPv4)", p)
		}
	}
	return &windowClients{static: slices.Clone(static), learned: map[netip.Addr]time.Time{}, demoted: map[netip.Addr]time.Time{}}, nil
}

func (w *windowClients) inStatic(ip netip.Addr) bool {
	for _, p := range w.static {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// learn makes ip windowed until now+windowTTL. The program is rebuilt only
// when the set of addresses changes (a new address, or expired ones gone).
func (w *windowClients) learn(ip netip.Addr, now time.Time) error {
	ip = ip.Unmap()
	if !ip.Is4() || w.inStatic(ip) {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := w.expireLocked(now)
	if _, ok := w.demoted[ip]; ok {
		if !changed {
			return nil
		}
		return w.attachLocked()
	}
	_, had := w.learned[ip]
	w.learned[ip] = now.Add(windowTTL)
	changed = changed || !had
	if len(w.learned)+len(w.demoted) > maxLearned {
		w.dropOldestLocked(w.learned)
		changed = true
	}
	if !changed {
		return nil
	}
	return w.attachLocked()
}

// forget makes ip lock-step again (a Pi now has the address).
func (w *windowClients) forget(ip netip.Addr) error {
	ip = ip.Unmap()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.learned[ip]; !ok {
		return nil
	}
	delete(w.learned, ip)
	return w.attachLocked()
}

// demote makes ip lock-step until now+windowTTL, even inside WindowClients:
// a windowed transfer to it failed.
func (w *windowClients) demote(ip netip.Addr, now time.Time) error {
	ip = ip.Unmap()
	if !ip.Is4() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
	delete(w.learned, ip)
	w.demoted[ip] = now.Add(windowTTL)
	for len(w.learned)+len(w.demoted) > maxLearned {
		if len(w.learned) > 0 {
			w.dropOldestLocked(w.learned)
		} else {
			w.dropOldestLocked(w.demoted)
		}
	}
	return w.attachLocked()
}

func (w *windowClients) expireLocked(now time.Time) bool {
	changed := false
	for _, m := range []map[netip.Addr]time.Time{w.learned, w.demoted} {
		for ip, exp := range m {
			if now.After(exp) {
				delete(m, ip)
				changed = true
			}
		}
	}
	return changed
}

func (w *windowClients) dropOldestLocked(m map[netip.Addr]time.Time) {
	var oldest netip.Addr
	var at time.Time
	for ip, exp := range m {
		if !oldest.IsValid() || exp.Before(at) {
			oldest, at = ip, exp
		}
	}
	delete(m, oldest)
}

func (w *windowClients) attachLocked() error {
	if w.attach == nil {
		return nil
	}
	prog, err := steeringProgram(sortedKeys(w.demoted), w.static, sortedKeys(w.learned))
	if err != nil {
		return err
	}
	return w.attach(prog)
}

func sortedKeys(m map[netip.Addr]time.Time) []netip.Addr {
	keys := make([]netip.Addr, 0, len(m))
	for ip := range m {
		keys = append(keys, ip)
	}
	slices.SortFunc(keys, netip.Addr.Compare)
	return keys
}

// steeringProgram returns socket index 0 (lock-step) for a request from one
// of lockstep, else 1 (windowed) for one from prefixes or addrs, else 0.
func steeringProgram(lockstep []netip.Addr, prefixes []netip.Prefix, addrs []netip.Addr) ([]bpf.RawInstruction, error) {
	srcOff := int32(skfNetOff + 12)
	loadSrc := bpf.LoadAbsolute{Off: uint32(srcOff), Size: 4}
	var prog []bpf.Instruction
	if len(lockstep) > 0 {
		prog = append(prog, loadSrc)
		for _, a := range lockstep {
			prog = append(prog,
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: be32(a), SkipTrue: 1},
				bpf.RetConstant{Val: 0},
			)
		}
	}
	for _, p := range prefixes {
		p = p.Masked()
		mask := uint32(0)
		if p.Bits() > 0 {
			mask = ^uint32(0) << (32 - p.Bits())
		}
		prog = append(prog,
			loadSrc,
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: be32(p.Addr()), SkipTrue: 1},
			bpf.RetConstant{Val: 1},
		)
	}
	if len(addrs) > 0 {
		prog = append(prog, loadSrc)
		for _, a := range addrs {
			prog = append(prog,
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: be32(a), SkipTrue: 1},
				bpf.RetConstant{Val: 1},
			)
		}
	}
	prog = append(prog, bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("tftpd: assemble steering program: %w", err)
	}
	return raw, nil
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// steer keeps the window set in step with what a request showed: a node
// booting through iPXE is windowed from its next request on (this one is
// already under way); an address an earlier iPXE boot left windowed that
// now belongs to a Pi goes back to lock-step.
func (s *Server) steer(t *transfer) {
	if s.window == nil {
		return
	}
	var err error
	switch {
	case t.target.Node.Image.Kind == ImageKernelInitrd:
		err = s.window.learn(t.req.Client, time.Now())
	case t.windowed:
		err = s.window.forget(t.req.Client)
	}
	if err != nil {
		s.log.Warn("tftp window steering not updated", "client", t.req.Client.String(), "err", err)
	}
}

// demoteFailed sends a client lock-step after a windowed transfer to it
// failed (see Losses above).
func (s *Server) demoteFailed(t *transfer) {
	if s.window == nil || !t.windowed || !t.outcome.Failed() {
		return
	}
	if err := s.window.demote(t.req.Client, time.Now()); err != nil {
		s.log.Warn("tftp window steering not updated", "client", t.req.Client.String(), "err", err)
		return
	}
	s.log.Info("tftp client moved to lock-step after a failed windowed transfer", "client", t.req.Client.String(),
		"file", t.raw, "for", windowTTL)
}
