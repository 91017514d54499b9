package controller

import (
	"net"
	"sync"
	"time"
)

// portListener is one listening socket whose connections can be handed
// from one consumer to the next without closing it: a balancer replaced
// because its settings changed serves a new view while the old view
// stops, and no connection waiting in the kernel's queue is lost.
type portListener struct {
	tls   bool // serve TLS on it (the balancer's TLS listener)
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func openPort(network, addr string) (*portListener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	p := &portListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *portListener) Addr() net.Addr { return p.ln.Addr() }

func (p *portListener) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			// EMFILE and the like pass; the connection stays queued
			// in the kernel meanwhile.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case p.conns <- c:
		case <-p.done:
			c.Close()
			return
		}
	}
}

// close closes the socket; connections not yet handed out are closed.
func (p *portListener) close() {
	p.once.Do(func() {
		close(p.done)
		p.ln.Close()
	})
	p.wg.Wait()
}

// view is a net.Listener taking connections from p until it is closed;
// closing it leaves p open.
func (p *portListener) view() net.Listener {
	return &portView{p: p, closed: make(chan struct{})}
}

type portView struct {
	p      *portListener
	closed chan struct{}
	once   sync.Once
}

func (v *portView) Accept() (net.Conn, error) {
	select {
	case c := <-v.p.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.p.done:
		return nil, net.ErrClosed
	}
}

func (v *portView) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *portView) Addr() net.Addr { return v.p.Addr() }
