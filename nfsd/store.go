package nfsd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
)

// Buckets of the controller's runtime database used by nfsd.
var (
	bucketExports = []byte("nfsd.exports") // export name -> uint32 number
	bucketRecords = []byte("nfsd.records") // export number -> {fileID -> parent fileID + name}
	bucketSeq     = []byte("nfsd.seq")     // export number -> next unallocated sequence number
	keyNextExport = []byte("\x00next")
)

// seqBlock is how many sequence numbers are reserved per database write: a
// crash loses at most the unused rest of a block, never reuses a number.
const seqBlock = 4096

// store keeps what cannot be recomputed from the layer trees: which number
// an export has, and where files whose identity is not their lower path now
// live (files created in an own layer, and lower files renamed by a node).
// A record is (parent fileID, name); a directory rename rewrites one record,
// not its subtree.
//
// Record changes are kept in memory and committed in batches (flush), by
// the server's background syncer or when many are pending, unless
// writeThrough is set: a bbolt commit costs two fdatasyncs, which a
// create-heavy client would otherwise pay per file. A crash can lose the
// last batch; the files themselves carry their identity, and a handle that
// misses its record triggers a scan of the own layer that rebuilds it
// (export.recoverRecords).
type store struct {
	db           *bbolt.DB
	writeThrough bool

	flushMu sync.Mutex // orders flushes against dropRecords
	mu      sync.Mutex
	seqs    map[uint32]*seqRange
	pending map[uint32]map[fileID]recordOp
}

const maxPendingRecords = 1 << 14

type seqRange struct{ next, limit uint64 }

func newStore(db *bbolt.DB) (*store, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketExports, bucketRecords, bucketSeq} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nfsd: create buckets: %w", err)
	}
	return &store{db: db, seqs: make(map[uint32]*seqRange), pending: make(map[uint32]map[fileID]recordOp)}, nil
}

// exportNumber returns the persistent number of the named export,
// allocating one the first time the name is seen.
func (s *store) exportNumber(name string) (uint32, error) {
	var n uint32
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketExports)
		if v := b.Get([]byte(name)); len(v) == 4 {
			n = binary.BigEndian.Uint32(v)
			return nil
		}
		next := uint32(1)
		if v := b.Get(keyNextExport); len(v) == 4 {
			next = binary.BigEndian.Uint32(v)
		}
		n = next
		// bbolt keeps the value slices until commit: one buffer each.
		if err := b.Put(keyNextExport, binary.BigEndian.AppendUint32(nil, next+1)); err != nil {
			return err
		}
		return b.Put([]byte(name), binary.BigEndian.AppendUint32(nil, n))
	})
	if err != nil {
		return 0, fmt.Errorf("nfsd: export number for %s: %w", name, err)
	}
	return n, nil
}

func exportKey(export uint32) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], export)
	return k[:]
}

// nextSeq allocates a sequence number that was never handed out before for
// this export, including before a crash or a node reset.
func (s *store) nextSeq(export uint32) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.seqs[export]
	if r == nil || r.next >= r.limit {
		var start uint64
		err := s.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketSeq)
			start = 1
			if v := b.Get(exportKey(export)); len(v) == 8 {
				start = binary.BigEndian.Uint64(v)
			}
			return b.Put(exportKey(export), binary.BigEndian.AppendUint64(nil, start+seqBlock))
		})
		if err != nil {
			return 0, fmt.Errorf("nfsd: reserve file ids: %w", err)
		}
		r = &seqRange{next: start, limit: start + seqBlock}
		s.seqs[export] = r
	}
	n := r.next
	r.next++
	return n, nil
}

type record struct {
	parent fileID
	name   string
}

func (s *store) get(export uint32, id fileID) (record, bool) {
	s.mu.Lock()
	if op, ok := s.pending[export][id]; ok {
		s.mu.Unlock()
		return op.rec, !op.delete
	}
	s.mu.Unlock()
	var rec record
	var ok bool
	_ = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords).Bucket(exportKey(export))
		if b == nil {
			return nil
		}
		v := b.Get(id.bytes())
		if len(v) < 8 {
			return nil
		}
		rec = record{parent: fileID(binary.BigEndian.Uint64(v[:8])), name: string(v[8:])}
		ok = true
		return nil
	})
	return rec, ok
}

// recordOp is one change to an export's records.
type recordOp struct {
	id     fileID
	rec    record
	delete bool
}

func (s *store) apply(export uint32, ops ...recordOp) error {
	if len(ops) == 0 {
		return nil
	}
	if s.writeThrough {
		return s.commit(map[uint32]map[fileID]recordOp{export: opsMap(ops)})
	}
	s.mu.Lock()
	m := s.pending[export]
	if m == nil {
		m = make(map[fileID]recordOp)
		s.pending[export] = m
	}
	for _, op := range ops {
		m[op.id] = op
	}
	n := 0
	for _, m := range s.pending {
		n += len(m)
	}
	s.mu.Unlock()
	if n >= maxPendingRecords {
		return s.flush()
	}
	return nil
}

func opsMap(ops []recordOp) map[fileID]recordOp {
	m := make(map[fileID]recordOp, len(ops))
	for _, op := range ops {
		m[op.id] = op
	}
	return m
}

// flush commits the pending record changes in one transaction.
func (s *store) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	batch := s.pending
	s.pending = make(map[uint32]map[fileID]recordOp)
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := s.commit(batch); err != nil {
		// Put them back (newer changes win) so the next flush retries.
		s.mu.Lock()
		for export, m := range batch {
			cur := s.pending[export]
			if cur == nil {
				s.pending[export] = m
				continue
			}
			for id, op := range m {
				if _, newer := cur[id]; !newer {
					cur[id] = op
				}
			}
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *store) commit(batch map[uint32]map[fileID]recordOp) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for export, ops := range batch {
			b, err := tx.Bucket(bucketRecords).CreateBucketIfNotExists(exportKey(export))
			if err != nil {
				return err
			}
			for _, op := range ops {
				if op.delete {
					if err := b.Delete(op.id.bytes()); err != nil {
						return err
					}
					continue
				}
				v := make([]byte, 8+len(op.rec.name))
				binary.BigEndian.PutUint64(v, uint64(op.rec.parent))
				copy(v[8:], op.rec.name)
				if err := b.Put(op.id.bytes(), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nfsd: update file records: %w", err)
	}
	return nil
}

// dropRecords forgets every record of an export (node reset). Sequence
// numbers are kept so old handles can never name a new file.
func (s *store) dropRecords(export uint32) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	delete(s.pending, export)
	s.mu.Unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketRecords).DeleteBucket(exportKey(export))
		if errors.Is(err, bbolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("nfsd: drop file records: %w", err)
	}
	return nil
}
