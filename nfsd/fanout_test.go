package nfsd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-done
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func fragment(payload []byte, last bool) []byte {
	h := uint32(len(payload))
	if last {
		h |= 0x80000000
	}
	return append(binary.BigEndian.AppendUint32(nil, h), payload...)
}

func TestFanoutJoinsFragments(t *testing.T) {
	client, server := tcpPair(t)
	m := newFanout(server, 2, nil, nil, nil)
	// An RPC call (of a program nobody serves) with a long body: records
	// go-nfs cannot decode never reach it (admit.go).
	var msg []byte
	for _, v := range []uint32{1, 0, 2, 0x20000000, 1, 0, 0, 0, 0, 0} {
		msg = binary.BigEndian.AppendUint32(msg, v)
	}
	msg = append(msg, bytes.Repeat([]byte("abcd"), 100)...)
	if _, err := client.Write(append(fragment(msg[:120], false), fragment(msg[120:], true)...)); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 2)
	for _, v := range m.vconns {
		go func(v *vconn) {
			b := make([]byte, 4+len(msg))
			if _, err := io.ReadFull(v, b); err == nil {
				got <- b
			}
		}(v)
	}
	select {
	case b := <-got:
		if want := fragment(msg, true); !bytes.Equal(b, want) {
			t.Fatalf("worker read %x, want one last fragment", b[:8])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("record never delivered")
	}
}

// Two workers writing replies in pieces at once: every record reaches the
// client whole.
func TestFanoutRepliesDoNotInterleave(t *testing.T) {
	client, server := tcpPair(t)
	m := newFanout(server, 2, nil, nil, nil)
	var wg sync.WaitGroup
	for i, v := range m.vconns {
		wg.Add(1)
		go func(v *vconn, b byte) {
			defer wg.Done()
			for r := 0; r < 20; r++ {
				rec := fragment(bytes.Repeat([]byte{b}, 70000), true)
				for len(rec) > 0 { // odd-sized pieces, as bufio flushes them
					n := min(len(rec), 4093)
					if _, err := v.Write(rec[:n]); err != nil {
						t.Error(err)
						return
					}
					rec = rec[n:]
				}
			}
		}(v, byte('A'+i))
	}
	br := bufio.NewReader(client)
	for r := 0; r < 40; r++ {
		rec, err := readRPCRecord(br)
		if err != nil {
			t.Fatal(err)
		}
		body := rec[4:]
		if len(body) != 70000 || bytes.Count(body, body[:1]) != len(body) {
			t.Fatalf("record %d mixes replies", r)
		}
	}
	wg.Wait()
}

func TestFanoutRefusesHugeRecords(t *testing.T) {
	client, server := tcpPair(t)
	newFanout(server, 2, nil, nil, nil)
	if _, err := client.Write(binary.BigEndian.AppendUint32(nil, 0x80000000|(maxRecord+1))); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after an oversized record")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection not closed")
	}
}

// nfsRecord is an NFSv3 call record for procedure proc (header only, as
// isNFSCall reads it) carrying tag.
func nfsRecord(proc uint32, tag byte) []byte {
	var b []byte
	for _, v := range []uint32{uint32(tag), 0, 2, nfsProgram, 3, proc} { // xid, CALL, RPC v2, program, version
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return fragment(append(b, tag), true)
}

// A call that may wait for a flush gets its own goroutine, so calls sent
// while it waits are answered; a quick call on an idle connection is
// answered by the reading goroutine, and what arrives meanwhile waits for it.
func TestFanoutAnswersInlineOnlyQuickCallsOnIdleConnections(t *testing.T) {
	const procQuick, procSlow = 1, 2
	tests := []struct {
		name        string
		first       uint32
		secondWaits bool
	}{
		{"slow call in its own goroutine", procSlow, false},
		{"quick call on the reading goroutine", procQuick, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			started, release := make(chan struct{}), make(chan struct{})
			fast := func(_ net.Addr, rec []byte, send func([]byte) error) bool {
				tag := rec[len(rec)-1]
				if tag == 'A' {
					close(started)
					<-release
				}
				_ = send(fragment([]byte{tag}, true))
				return true
			}
			quick := func(rec []byte) bool { return binary.BigEndian.Uint32(rec[24:]) == procQuick }
			newFanout(server, 4, fast, quick, nil)
			if _, err := client.Write(nfsRecord(tc.first, 'A')); err != nil {
				t.Fatal(err)
			}
			<-started
			if _, err := client.Write(nfsRecord(procQuick, 'B')); err != nil {
				t.Fatal(err)
			}
			replies := make(chan byte, 2)
			go func() {
				br := bufio.NewReader(client)
				for {
					b := make([]byte, 5)
					if _, err := io.ReadFull(br, b); err != nil {
						return
					}
					replies <- b[4]
				}
			}()
			select {
			case got := <-replies:
				if tc.secondWaits {
					t.Fatalf("reply %q arrived while the inline call was still being answered", got)
				}
				if got != 'B' {
					t.Fatalf("first reply %q, want B", got)
				}
			case <-time.After(300 * time.Millisecond):
				if !tc.secondWaits {
					t.Fatal("second call not answered while the first waited")
				}
			}
			close(release)
			want := map[byte]bool{'A': true}
			if tc.secondWaits {
				want['B'] = true
			}
			for len(want) > 0 {
				select {
				case got := <-replies:
					delete(want, got)
				case <-time.After(5 * time.Second):
					t.Fatalf("replies missing: %v", want)
				}
			}
		})
	}
}
