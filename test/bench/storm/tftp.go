package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
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
	// each DATA block of a download is ACKed: the Pi's own pace.
	onData func(got int64)
	// Counters for the report.
	retransmits int
}

type tftpResult struct {
	size  int64  // bytes received, or tsize for a probe
	data  []byte // contents of small files (config.txt, cmdline.txt)
	tsize int64  // from the OACK, -1 when none
}

func (c *tftpClient) send(to *net.UDPAddr, p []byte) error {
	_, err := c.conn.WriteToUDP(p, to)
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

func ack(block uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opACK), block)
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

// get runs one request. keepData keeps the contents of files up to 64 KiB.
func (c *tftpClient) get(name string, opts []string, mode fetchMode, keepData bool) (tftpResult, error) {
	res := tftpResult{tsize: -1}
	conn, err := c.listen()
	if err != nil {
		return res, fmt.Errorf("tftp socket: %w", err)
	}
	defer conn.Close()
	c.conn = conn
	last := rrq(name, opts)
	lastTo := c.server
	var peer *net.UDPAddr // the server's transfer TID
	blksize := 512
	var expect uint16 = 1
	tries := 0
	if err := c.send(lastTo, last); err != nil {
		return res, err
	}
	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.rto)); err != nil {
			return res, err
		}
		n, from, err := c.conn.ReadFromUDP(c.buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
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
		if err != nil {
			return res, err
		}
		p := c.buf[:n]
		if n < 4 || !from.IP.Equal(c.server.IP) {
			continue
		}
		if peer == nil {
			if from.Port == c.server.Port {
				continue
			}
			peer = from
		} else if from.Port != peer.Port {
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
			last, lastTo, tries = ack(0), peer, 0
			if err := c.send(peer, last); err != nil {
				return res, err
			}
		case opDATA:
			block := binary.BigEndian.Uint16(p[2:])
			if block != expect {
				if block == expect-1 {
					// Our ACK was lost: the server resent; ACK again.
					_ = c.send(peer, ack(block))
				}
				continue
			}
			if mode == probeAfterBlock1 {
				res.size = res.tsize
				return res, c.send(peer, errPacket(0, ""))
			}
			data := p[4:]
			res.size += int64(len(data))
			if keepData && res.size <= 64<<10 {
				res.data = append(res.data, data...)
			}
			if c.onData != nil {
				c.onData(res.size)
			}
			last, lastTo, tries = ack(block), peer, 0
			if err := c.send(peer, last); err != nil {
				return res, err
			}
			expect++ // wraps past 65535, as the server's block number does
			if len(data) < blksize {
				if res.tsize >= 0 && res.tsize != res.size {
					return res, fmt.Errorf("%s: got %d bytes, OACK said %d", name, res.size, res.tsize)
				}
				return res, nil
			}
		}
	}
}
