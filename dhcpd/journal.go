package dhcpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// The lease journal is how a granted lease becomes durable before its ACK
// with one fdatasync: the group commit appends the batch's lease records
// to a file and fdatasyncs it (one sync), and only later, in the
// background, moves them into bbolt, whose commit costs two fdatasyncs
// (data pages, then the meta page that points at them). Many journal
// batches share one bbolt commit.
//
// Why no ACKed lease is lost, after kill -9 or power loss: an ACK leaves
// only after the fdatasync that covers its record returned. The journal is
// emptied (truncated) only after a bbolt transaction holding every record
// in it has committed, i.e. after bbolt's own fdatasyncs. A crash in
// between leaves the records in both places; applying them again is
// harmless, because the journal holds every lease write in order (bbolt
// gets lease records from nowhere else while it is in use), so replaying
// it in order ends in the same state. A record cut short by a crash fails
// its length or checksum and ends the replay; it was never ACKed, since
// its fdatasync had not returned. Readers (Store.Leases: the API, the
// offline CLI, the kill -9 test) see bbolt with the journal applied over
// it, and New applies and empties it before serving.
//
// Record: payload length (u32, big-endian), CRC-32C of the payload, then
// the payload: the 4-byte address key and encodeLease's value.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const journalHeader = 8

// journalPath is where the journal of db lives: next to the database
// file, so it moves and is removed with the state directory.
func journalPath(db *bbolt.DB) string { return db.Path() + ".dhcpd-journal" }

// appendRecord appends one lease's journal record to b.
func appendRecord(b []byte, l *Lease) []byte {
	start := len(b)
	b = append(b, make([]byte, journalHeader)...)
	b = append(b, ipKey(l.IP)...)
	b = appendLease(b, l)
	payload := b[start+journalHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

// forEachRecord calls f with each intact record of b, in order, and stops
// at the first one that is cut short or fails its checksum.
func forEachRecord(b []byte, f func(key, value []byte) error) error {
	for len(b) >= journalHeader {
		n := int(binary.BigEndian.Uint32(b))
		if n < 4 || len(b)-journalHeader < n {
			return nil
		}
		payload := b[journalHeader : journalHeader+n]
		if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[4:]) {
			return nil
		}
		if err := f(payload[:4], payload[4:]); err != nil {
			return err
		}
		b = b[journalHeader+n:]
	}
	return nil
}

// journal is the open journal file; only the committer writes it.
type journal struct {
	f    *os.File
	path string
}

// openJournal opens (creating) the journal at path for appending. A new
// file's directory entry is synced, so the file itself survives a crash.
func openJournal(path string) (*journal, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lease journal: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("lease journal: %w", err)
		}
	}
	return &journal{f: f, path: path}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// write appends b (whole records) and waits until it is on disk.
func (j *journal) write(b []byte) error {
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("write lease journal: %w", err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("sync lease journal: %w", err)
	}
	return nil
}

// reset empties the journal, once bbolt holds all of it. The truncation
// is synced (a few times a second at most): otherwise, after a power
// loss, new records written over the start of the old ones without
// their sync could be followed by old records read in the wrong order.
func (j *journal) reset() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("empty lease journal: %w", err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("sync emptied lease journal: %w", err)
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }

// readJournal returns the journal's contents, nil when there is none.
func readJournal(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lease journal: %w", err)
	}
	return b, nil
}

// putRecords writes journal records into the lease bucket, in order.
func putRecords(tx *bbolt.Tx, records []byte) error {
	b := tx.Bucket(bucketLeases)
	return forEachRecord(records, func(k, v []byte) error { return b.Put(k, v) })
}
