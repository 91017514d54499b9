package nfsd

import (
	"context"
	"errors"
	"io/fs"
	"net"

	"github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
)

// go-nfs serves each connection on a goroutine of its own with no recover,
// so a panic in anything it calls would end the process. The handler's
// entry points (where forged handles and mount paths arrive) are wrapped
// here: a panic becomes an error answer for that one request, and is
// logged and counted. The fast path (fanout.answerFast) has its own.
type recoveringHandler struct {
	h *handler
	g *connGuard
}

func recoverHandler(h *handler, g *connGuard) *recoveringHandler {
	return &recoveringHandler{h: h, g: g}
}

var errPanicked = errors.New("nfsd: request handling failed")

// guard runs f; a panic in it is logged, counted and reported as ok=false.
func (r *recoveringHandler) guard(where string, c net.Conn, f func()) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			r.g.panicked(where, c, v)
			ok = false
		}
	}()
	f()
	return true
}

func (r *recoveringHandler) Mount(ctx context.Context, c net.Conn, req nfs.MountRequest) (st nfs.MountStatus, f billy.Filesystem, auth []nfs.AuthFlavor) {
	if !r.guard("mount", c, func() { st, f, auth = r.h.Mount(ctx, c, req) }) {
		return nfs.MountStatusErrServerFault, nil, nil
	}
	return st, f, auth
}

func (r *recoveringHandler) Change(f billy.Filesystem) (ch billy.Change) {
	if !r.guard("change", nil, func() { ch = r.h.Change(f) }) {
		return nil
	}
	return ch
}

func (r *recoveringHandler) FSStat(ctx context.Context, f billy.Filesystem, st *nfs.FSStat) (err error) {
	if !r.guard("fsstat", nil, func() { err = r.h.FSStat(ctx, f, st) }) {
		return errPanicked
	}
	return err
}

func (r *recoveringHandler) ToHandle(f billy.Filesystem, elems []string) (fh []byte) {
	if !r.guard("to_handle", nil, func() { fh = r.h.ToHandle(f, elems) }) {
		return nil
	}
	return fh
}

func (r *recoveringHandler) FromHandle(fh []byte) (f billy.Filesystem, p []string, err error) {
	if !r.guard("from_handle", nil, func() { f, p, err = r.h.FromHandle(fh) }) {
		return nil, nil, &nfs.NFSStatusError{NFSStatus: nfs.NFSStatusServerFault}
	}
	return f, p, err
}

func (r *recoveringHandler) InvalidateHandle(f billy.Filesystem, fh []byte) error {
	return r.h.InvalidateHandle(f, fh)
}

func (r *recoveringHandler) HandleLimit() int { return r.h.HandleLimit() }

// VerifierFor and DataForVerifier keep go-nfs's optional CachingHandler.
func (r *recoveringHandler) VerifierFor(p string, contents []fs.FileInfo) (v uint64) {
	if !r.guard("verifier", nil, func() { v = r.h.VerifierFor(p, contents) }) {
		return 0
	}
	return v
}

func (r *recoveringHandler) DataForVerifier(p string, verifier uint64) (list []fs.FileInfo) {
	if !r.guard("verifier", nil, func() { list = r.h.DataForVerifier(p, verifier) }) {
		return nil
	}
	return list
}
