package tftpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// rawClient speaks TFTP packet by packet, so tests can do what real boot
// clients do and library clients cannot: abort a tsize probe, acknowledge
// twice, watch block numbers wrap. Like the Pi's bootloader (see
// raspberrypi/firmware#1700's capture) it uses a new source port for every
// request.
type rawClient struct {
	local  net.IP
	server *net.UDPAddr
	conn   *net.UDPConn // the current request's socket
	// wait bounds every read: a server that does not answer fails the test
	// instead of hanging it (not a speed assertion).
	wait time.Duration
}

func newRawClient(localIP string, server *net.UDPAddr) (*rawClient, error) {
	return &rawClient{local: net.ParseIP(localIP), server: server, wait: 10 * time.Second}, nil
}

func (c *rawClient) Close() error {
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// fresh opens the socket of a new request.
func (c *rawClient) fresh() error {
	c.Close()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: c.local})
	c.conn = conn
	return err
}

type rawOpts struct {
	options []string // name, value, name, value...
	// The Pi's tsize probe, both ways it is described: ERROR 0 in answer
	// to the OACK (PROTOCOLS.md), or ACK 0 and ERROR 0 "Early terminate"
	// in answer to the first DATA block (firmware#1700's capture).
	abortAfterOACK   bool
	abortAfterBlock1 bool
	duplicateACKs    bool // acknowledge every block twice
}

type rawResult struct {
	data     []byte
	oack     map[string]string
	errCode  int // -1: no ERROR received
	errMsg   string
	blocks   int
	wrapped  bool // the block number went past 65535 back to 0
	serverTD *net.UDPAddr
}

const (
	opcRRQ   = 1
	opcWRQ   = 2
	opcDATA  = 3
	opcACK   = 4
	opcERROR = 5
	opcOACK  = 6
)

func (c *rawClient) request(op uint16, name string, options []string) error {
	if err := c.fresh(); err != nil {
		return err
	}
	p := binary.BigEndian.AppendUint16(nil, op)
	p = append(append(p, name...), 0)
	p = append(append(p, "octet"...), 0)
	for _, o := range options {
		p = append(append(p, o...), 0)
	}
	_, err := c.conn.WriteToUDP(p, c.server)
	return err
}

func (c *rawClient) send(to *net.UDPAddr, p []byte) error {
	_, err := c.conn.WriteToUDP(p, to)
	return err
}

func ack(block uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opcACK), block)
}

func errorPacket(code uint16, msg string) []byte {
	p := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opcERROR), code)
	return append(append(p, msg...), 0)
}

func (c *rawClient) read(buf []byte) (int, *net.UDPAddr, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(c.wait)); err != nil {
		return 0, nil, err
	}
	return c.conn.ReadFromUDP(buf)
}

// get reads a file the way a lock-step boot client does.
func (c *rawClient) get(name string, o rawOpts) (rawResult, error) {
	res := rawResult{errCode: -1}
	if err := c.request(opcRRQ, name, o.options); err != nil {
		return res, err
	}
	blksize := 512
	expect := uint16(1)
	buf := make([]byte, 65536)
	var data bytes.Buffer
	for {
		n, from, err := c.read(buf)
		if err != nil {
			return res, fmt.Errorf("%s: after %d blocks: %w", name, res.blocks, err)
		}
		if res.serverTD == nil {
			res.serverTD = from
		} else if from.Port != res.serverTD.Port {
			c.send(from, errorPacket(5, "unknown transfer ID"))
			continue
		}
		if n < 4 {
			return res, fmt.Errorf("%s: short packet %x", name, buf[:n])
		}
		switch op := binary.BigEndian.Uint16(buf); op {
		case opcERROR:
			res.errCode = int(binary.BigEndian.Uint16(buf[2:]))
			res.errMsg = string(bytes.TrimRight(buf[4:n], "\x00"))
			return res, nil
		case opcOACK:
			if res.blocks > 0 || res.oack != nil {
				return res, fmt.Errorf("%s: unexpected OACK", name)
			}
			res.oack = parseOptions(buf[2:n])
			if o.abortAfterOACK {
				return res, c.send(from, errorPacket(0, "Early terminate"))
			}
			if v, ok := res.oack["blksize"]; ok {
				blksize, _ = strconv.Atoi(v)
			}
			if err := c.send(from, ack(0)); err != nil {
				return res, err
			}
		case opcDATA:
			block := binary.BigEndian.Uint16(buf[2:])
			if block != expect {
				// A retransmission of the previous block: our ACK was lost
				// or slow. Acknowledge it again.
				if block == expect-1 {
					c.send(from, ack(block))
					continue
				}
				return res, fmt.Errorf("%s: got block %d, want %d", name, block, expect)
			}
			if o.abortAfterBlock1 {
				return res, c.send(from, errorPacket(0, "Early terminate"))
			}
			payload := buf[4:n]
			data.Write(payload)
			res.blocks++
			if block == 0 {
				res.wrapped = true
			}
			c.send(from, ack(block))
			if o.duplicateACKs {
				c.send(from, ack(block))
			}
			expect++
			if len(payload) < blksize {
				res.data = data.Bytes()
				return res, nil
			}
		default:
			return res, fmt.Errorf("%s: unexpected opcode %d", name, op)
		}
	}
}

// put sends a WRQ and returns the server's first answer.
func (c *rawClient) put(name string) (rawResult, error) {
	res := rawResult{errCode: -1}
	if err := c.request(opcWRQ, name, nil); err != nil {
		return res, err
	}
	buf := make([]byte, 1024)
	n, _, err := c.read(buf)
	if err != nil {
		return res, err
	}
	if n >= 4 && binary.BigEndian.Uint16(buf) == opcERROR {
		res.errCode = int(binary.BigEndian.Uint16(buf[2:]))
		res.errMsg = string(bytes.TrimRight(buf[4:n], "\x00"))
		return res, nil
	}
	return res, errors.New("WRQ was not refused")
}

func parseOptions(b []byte) map[string]string {
	parts := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	m := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		m[string(parts[i])] = string(parts[i+1])
	}
	return m
}
