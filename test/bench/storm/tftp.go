package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// A TFTP client that behaves like the Pi bootloaders: lock-step RRQ/DATA/
// ACK, the tsize probe aborted after the OACK (Pi 4/5) or after block 1
// (Pi 3's bootcode.bin), retransmission of the last packet after rto, and
// no retry of a failed file (the Pi restarts its boot instead).

const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// fetchMode says how a request ends.
type fetchMode int

const (
	fetchFull        fetchMode = iota // download the file
	probeAfterOACK                    // Pi 4/5: read tsize from the OACK, answer ERROR 0
	probeAfterBlock1                  // Pi 3: ACK the OACK, take block 1, answer ERROR 0
)

var errNotFound = errors.New("file not found")

type tftpClient struct {
	// listen opens the socket of one request: every request has a port of
	// its own (its TID), so nothing late from an earlier transfer is
	// taken for an answer.
	listen  func() (*net.UDPConn, error)
	conn    *net.UDPConn
	server  *net.UDPAddr
	rto     time.Duration
	retries int
	buf     []byte
	// onData, when set, is called with the bytes received so far before
	// each DATA block of a download is ACKed (last: the file's final
	// block): the Pi's own pace.
	onData func(got int64, last bool)
	// Counters for the report.
	retransmits int
	// ackBuf is the ACK being sent: built in place, no allocation per
	// block (some 1.7 M blocks in a 100-Pi storm).
	ackBuf [4]byte
}

type tftpResult struct {
	size  int64  // bytes received, or tsize for a probe
	data  []byte // contents of small files (config.txt, cmdline.txt)
	tsize int64  // from the OACK, -1 when none
}

func (c *tftpClient) send(to netip.AddrPort, p []byte) error {
	_, err := c.conn.WriteToUDPAddrPort(p, to)
	return err
}

func rrq(name string, opts []string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opRRQ)
	b = append(append(b, name...), 0)
	b = append(append(b, "octet"...), 0)
	for _, o := range opts {
		b = append(append(b, o...), 0)
	}
	return b
}

// ack builds the ACK of block in c.ackBuf; the slice stays valid (and
// unchanged) until the next call.
func (c *tftpClient) ack(block uint16) []byte {
	binary.BigEndian.PutUint16(c.ackBuf[:], opACK)
	binary.BigEndian.PutUint16(c.ackBuf[2:], block)
	return c.ackBuf[:]
}

func errPacket(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opERROR), code)
	return append(append(b, msg...), 0)
}

func parseOACK(p []byte) map[string]string {
	out := map[string]string{}
	f := bytes.Split(p, []byte{0})
	for i := 0; i+1 < len(f); i += 2 {
		out[string(bytes.ToLower(f[i]))] = string(f[i+1])
	}
	return out
}

// read waits for the next packet for at most rto from now, as a read
// deadline set before every read would, without moving the socket's
// deadline per packet: *armed is the deadline the socket has, re-armed
// only when it has passed or fires before now+rto has. ok is false on a
// timeout.
func (c *tftpClient) read(armed *time.Time) (n int, from netip.AddrPort, ok bool, err error) {
	now := time.Now()
	due := now.Add(c.rto)
	if !armed.After(now) {
		if err := c.conn.SetReadDeadline(due); err != nil {
			return 0, from, false, err
		}
		*armed = due
	}
	for {
		n, from, err = c.conn.ReadFromUDPAddrPort(c.buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, from, err == nil, err
		}
		if !time.Now().Before(due) {
			return 0, from, false, nil
		}
		// The deadline was armed for an earlier packet: wait the rest.
		if err := c.conn.SetReadDeadline(due); err != nil {
			return 0, from, false, err
		}
		*armed = due
	}
}

// get runs one request. keepData keeps the contents of files up to 64 KiB.
func (c *tftpClient) get(name string, opts []string, mode fetchMode, keepData bool) (tftpResult, error) {
	res := tftpResult{tsize: -1}
	conn, err := c.listen()
	if err != nil {
		return res, fmt.Errorf("tftp socket: %w", err)
	}
	defer conn.Close()
	c.conn = conn
	server := c.server.AddrPort()
	serverIP := server.Addr().Unmap()
	last := rrq(name, opts)
	lastTo := server
	var peer netip.AddrPort // the server's transfer TID; zero until its first packet
	blksize := 512
	var expect uint16 = 1
	tries := 0
	var armed time.Time // the socket's read deadline
	if err := c.send(lastTo, last); err != nil {
		return res, err
	}
	for {
		n, from, ok, err := c.read(&armed)
		if err != nil {
			return res, err
		}
		if !ok {
			tries++
			if tries > c.retries {
				return res, fmt.Errorf("%s: timeout after %d retransmissions (block %d)", name, c.retries, expect)
			}
			c.retransmits++
			if err := c.send(lastTo, last); err != nil {
				return res, err
			}
			continue
		}
		p := c.buf[:n]
		if n < 4 || from.Addr().Unmap() != serverIP {
			continue
		}
		if !peer.IsValid() {
			if from.Port() == server.Port() {
				continue
			}
			peer = from
		} else if from.Port() != peer.Port() {
			// A late packet of an earlier transfer: tell it to stop.
			_ = c.send(from, errPacket(5, "unknown transfer ID"))
			continue
		}
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			code := binary.BigEndian.Uint16(p[2:])
			if code == 1 {
				return res, errNotFound
			}
			return res, fmt.Errorf("%s: server error %d %q", name, code, bytes.TrimRight(p[4:], "\x00"))
		case opOACK:
			if expect != 1 || res.size > 0 {
				continue // duplicate OACK: our ACK 0 went out
			}
			o := parseOACK(p[2:])
			if v, ok := o["tsize"]; ok {
				res.tsize, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := o["blksize"]; ok {
				blksize, _ = strconv.Atoi(v)
			}
			if mode == probeAfterOACK {
				res.size = res.tsize
				return res, c.send(peer, errPacket(0, ""))
			}
			last, lastTo, tries = c.ack(0), peer, 0
			if err := c.send(peer, last); err != nil {
				return res, err
			}
		case opDATA:
			block := binary.BigEndian.Uint16(p[2:])
			if block != expect {
				if block == expect-1 {
					// Our ACK was lost: the server resent; ACK again
					// (the same ACK as last, when last is an ACK).
					_ = c.send(peer, c.ack(block))
				}
				continue
			}
			if mode == probeAfterBlock1 {
				res.size = res.tsize
				return res, c.send(peer, errPacket(0, ""))
			}
			data := p[4:]
			final := len(data) < blksize
			res.size += int64(len(data))
			if keepData && res.size <= 64<<10 {
				res.data = append(res.data, data...)
			}
			if c.onData != nil {
				c.onData(res.size, final)
			}
			last, lastTo, tries = c.ack(block), peer, 0
			if err := c.send(peer, last); err != nil {
				return res, err
			}
			expect++ // wraps past 65535, as the server's block number does
			if final {
				if res.tsize >= 0 && res.tsize != res.size {
					return res, fmt.Errorf("%s: got %d bytes, OACK said %d", name, res.size, res.tsize)
				}
				return res, nil
			}
		}
	}
}
