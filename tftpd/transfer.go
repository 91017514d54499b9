package tftpd

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pin/tftp/v3"
)

// transfer is one read request's record, for the log, metrics and stages.
type transfer struct {
	req     Request
	raw     string // name as sent
	target  Target
	known   bool // target.Node is set
	size    int64
	sent    int64
	outcome Outcome
	err     error // why, for the log (never sent)
	start   time.Time
	// windowed: sent by the windowed server (blocks ahead of ACKs).
	windowed bool
}

// clientMessage is the only text a client ever sees: no host paths, no
// internal detail.
func clientMessage(o Outcome) string {
	switch o {
	case OutcomeNotFound, OutcomeUnknownClient, OutcomeNetbootOff:
		return "file not found"
	case OutcomeDenied:
		return "access violation"
	case OutcomeBusy:
		return "too many transfers from this client"
	case OutcomeWriteRefused:
		return "read-only server"
	}
	return "server error"
}

type clientError struct{ msg string }

func (e clientError) Error() string { return e.msg }

func (s *Server) handleRead(name string, rf io.ReaderFrom) error {
	return s.read(&transfer{raw: name, start: time.Now()}, rf)
}

func (s *Server) handleWindowedRead(name string, rf io.ReaderFrom) error {
	return s.read(&transfer{raw: name, start: time.Now(), windowed: true}, rf)
}

func (s *Server) read(t *transfer, rf io.ReaderFrom) error {
	ot := rf.(tftp.OutgoingTransfer)
	ra := ot.RemoteAddr()
	t.req.Client = addrFromIP(ra.IP)
	if pi, ok := rf.(tftp.RequestPacketInfo); ok {
		t.req.Local = addrFromIP(pi.LocalIP())
	}
	s.m.active.Inc()
	defer s.m.active.Dec()

	s.serveReadSafe(t, rf, ot)
	s.finish(t)
	if t.outcome == OutcomeOK || t.sent > 0 || t.outcome == OutcomeEarlyAbort ||
		t.outcome == OutcomeTimeout || t.outcome == OutcomeClientAbort {
		// The library has ended the exchange itself.
		return nil
	}
	return clientError{clientMessage(t.outcome)}
}

func (s *Server) serveRead(t *transfer, rf io.ReaderFrom, ot tftp.OutgoingTransfer) {
	clean, err := CleanName(t.raw)
	if err != nil {
		t.outcome, t.err = OutcomeDenied, err
		return
	}
	t.req.Name = clean
	if !s.limit.acquire(t.req.Client) {
		t.outcome = OutcomeBusy
		return
	}
	defer s.limit.release(t.req.Client)

	t.target, err = s.route(t.req)
	var unknown *UnknownClientError
	switch {
	case errors.As(err, &unknown):
		t.outcome, t.err = OutcomeUnknownClient, err
		s.reportUnknown(t, unknown)
		return
	case err != nil:
		t.outcome, t.err = outcomeOfOpen(err), err
		return
	}
	t.known = true
	s.steer(t)

	nfs := nfsTarget{Server: s.cfg.NFSServer, Port: s.cfg.NFSPort, Export: exportOf(t.target.Node)}
	if !nfs.Server.IsValid() {
		nfs.Server = t.req.Local
	}
	c, err := s.files.open(t.target, nfs)
	if err != nil {
		t.outcome, t.err = outcomeOfOpen(err), err
		return
	}
	defer c.close()
	t.size = c.size
	ot.SetSize(c.size)
	cr := &countingReader{r: c.r}
	_, err = rf.ReadFrom(cr)
	t.sent = cr.n
	t.outcome, t.err = outcomeOfSend(err, cr.n <= int64(cr.first)), err
	if cr.err != nil {
		t.outcome, t.err = OutcomeError, cr.err
	}
}

func (s *Server) route(req Request) (Target, error) {
	for _, r := range s.routes {
		t, ok, err := r.Resolve(s.ctx, req)
		if ok {
			return t, err
		}
	}
	return Target{}, ErrNotFound
}

func outcomeOfOpen(err error) Outcome {
	var nameErr *NameError
	switch {
	case errors.Is(err, ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, ErrNetbootOff):
		return OutcomeNetbootOff
	case errors.Is(err, ErrDenied), errors.As(err, &nameErr):
		return OutcomeDenied
	}
	return OutcomeError
}

// outcomeOfSend classifies the library's result. Its errors are untyped, so
// the classes come from behaviour: network errors are net.Error (a timeout
// after the last retry, or a failed send); anything else ended the exchange
// at the protocol level, in practice an ERROR from the client. An ERROR
// before the second block was handed out (early) is the Pi's tsize probe:
// it asks with tsize=0 and, having the size, ends the transfer either in
// answer to our OACK or to the first block ("Early terminate").
func outcomeOfSend(err error, early bool) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	case errors.As(err, &ne):
		return OutcomeError
	case early:
		return OutcomeEarlyAbort
	}
	return OutcomeClientAbort
}

func (s *Server) reportUnknown(t *transfer, e *UnknownClientError) {
	u := UnknownClient{IP: t.req.Client, MAC: e.Key.MAC, Serial: e.Key.Serial, File: t.req.Name, At: t.start}
	if u.MAC == nil {
		u.MAC = e.MAC
	}
	key := e.Key.String()
	if s.seen.first(key, t.start) {
		s.log.Info("unknown client asked to boot", "client", t.req.Client, "key", key, "mac", macString(u.MAC), "file", t.req.Name)
	}
	if s.rec != nil {
		s.rec.RecordUnknown(s.ctx, u)
	}
}

func (s *Server) finish(t *transfer) {
	d := time.Since(t.start)
	s.m.transfers.WithLabelValues(string(t.outcome)).Inc()
	if t.windowed {
		s.m.windowed.Inc()
	}
	s.m.sentBytes.Add(float64(t.sent))
	if t.sent > 0 || t.outcome == OutcomeOK {
		s.m.duration.WithLabelValues(string(t.outcome)).Observe(d.Seconds())
	}

	attrs := []slog.Attr{
		slog.String("client", t.req.Client.String()),
		slog.String("file", t.raw),
		slog.String("outcome", string(t.outcome)),
		slog.Int64("bytes", t.sent),
		slog.Duration("duration", d),
	}
	if t.windowed {
		attrs = append(attrs, slog.Bool("windowed", true))
	}
	if t.known {
		attrs = append(attrs, slog.String("node", t.target.Node.Name), slog.String("mac", macString(t.target.Node.MAC)))
	}
	if t.err != nil {
		attrs = append(attrs, slog.String("err", t.err.Error()))
	}
	level := slog.LevelDebug
	if t.outcome.Failed() {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(s.ctx, level, "tftp transfer", attrs...)
	s.demoteFailed(t)

	if !t.known || !(t.outcome == OutcomeOK || t.outcome.Failed()) {
		return
	}
	if stage, ok := stageOf(t.target.Node.Image, t.target.Path); ok && s.rec != nil {
		s.rec.RecordStage(s.ctx, StageEvent{
			Node: t.target.Node.Name, Stage: stage, File: t.target.Path, Client: t.req.Client.String(),
			Outcome: t.outcome, Bytes: t.sent, At: time.Now(),
		})
	}
}

func (s *Server) handleWrite(name string, _ io.WriterTo) error {
	s.m.transfers.WithLabelValues(string(OutcomeWriteRefused)).Inc()
	s.log.Debug("tftp write refused", "file", name)
	return clientError{clientMessage(OutcomeWriteRefused)}
}

// countingReader counts what the library read. The library reads one
// block at a time into a block-sized buffer, so the first read's size is the
// negotiated blksize and n <= first means at most one block went out.
//
// It also stands between the library and file errors: the library sends a
// reader's error text to the client, and an *os.File's names a host path.
type countingReader struct {
	r     io.Reader
	n     int64
	first int
	err   error // a read failure, kept for the log
}

// errReadFailed is what the client sees when reading a boot file fails.
var errReadFailed = errors.New("server read error")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.first == 0 {
		c.first = len(p)
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
		return n, errReadFailed
	}
	return n, err
}

func addrFromIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func macString(m net.HardwareAddr) string {
	if m == nil {
		return ""
	}
	return m.String()
}
