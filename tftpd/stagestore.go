package tftpd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// Buckets StageStore keeps in the runtime database.
var (
	stagesBucket  = []byte("tftpd.stages")  // node name → last StageEvent (JSON)
	unknownBucket = []byte("tftpd.unknown") // client key → last UnknownClient (JSON)
)

// StageStore is a Recorder that keeps each node's last boot stage and the
// unknown clients seen, in the controller's bbolt runtime database, so
// `pictl node ls` can answer "how far did pi3 get?" after a restart too.
//
// A boot fetches dozens of files; to keep fsyncs off the transfer path it
// writes a node's stage only when the stage, file or outcome changes (or a
// minute has passed), and an unknown client at most once a minute.
type StageStore struct {
	db  *bbolt.DB
	log *slog.Logger

	mu          sync.Mutex
	lastStage   map[string]StageEvent
	lastUnknown map[string]time.Time
}

// RewriteAfter is how long an unchanged stage or unknown client goes
// without being written again (its time stays fresh to that precision).
const RewriteAfter = time.Minute

// NewStageStore creates the store's buckets if needed. log may be nil.
func NewStageStore(db *bbolt.DB, log *slog.Logger) (*StageStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{stagesBucket, unknownBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tftpd stage store: %w", err)
	}
	return &StageStore{db: db, log: log, lastStage: map[string]StageEvent{}, lastUnknown: map[string]time.Time{}}, nil
}

// RecordStage implements Recorder.
func (s *StageStore) RecordStage(_ context.Context, ev StageEvent) {
	s.mu.Lock()
	prev, ok := s.lastStage[ev.Node]
	if ok && prev.Stage == ev.Stage && prev.File == ev.File && prev.Outcome == ev.Outcome && ev.At.Sub(prev.At) < RewriteAfter {
		s.mu.Unlock()
		return
	}
	s.lastStage[ev.Node] = ev
	s.mu.Unlock()
	s.put(stagesBucket, ev.Node, ev)
}

// RecordUnknown implements Recorder.
func (s *StageStore) RecordUnknown(_ context.Context, c UnknownClient) {
	key := unknownKey(c)
	s.mu.Lock()
	if t, ok := s.lastUnknown[key]; ok && c.At.Sub(t) < RewriteAfter {
		s.mu.Unlock()
		return
	}
	if len(s.lastUnknown) > 4096 {
		clear(s.lastUnknown)
	}
	s.lastUnknown[key] = c.At
	s.mu.Unlock()
	s.put(unknownBucket, key, c)
}

// unknownKey prefers the most stable identity the client presented.
func unknownKey(c UnknownClient) string {
	switch {
	case c.Serial != "":
		return "serial " + c.Serial
	case c.MAC != nil:
		return "mac " + c.MAC.String()
	}
	return "ip " + c.IP.String()
}

func (s *StageStore) put(bucket []byte, key string, v any) {
	data, err := json.Marshal(v)
	if err == nil {
		err = s.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucket).Put([]byte(key), data)
		})
	}
	if err != nil {
		s.log.Warn("runtime database: cannot record", "bucket", string(bucket), "key", key, "err", err)
	}
}

// LastStage returns the last boot stage recorded for a node.
func (s *StageStore) LastStage(node string) (ev StageEvent, ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		data := tx.Bucket(stagesBucket).Get([]byte(node))
		if data == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(data, &ev)
	})
	if err != nil {
		return StageEvent{}, false, fmt.Errorf("tftpd stage of %s: %w", node, err)
	}
	return ev, ok, nil
}

// Stages returns every node's last stage, by node name.
func (s *StageStore) Stages() (map[string]StageEvent, error) {
	out := map[string]StageEvent{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(stagesBucket).ForEach(func(k, v []byte) error {
			var ev StageEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			out[string(k)] = ev
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tftpd stages: %w", err)
	}
	return out, nil
}

// Unknown returns the unknown clients seen (last request of each).
func (s *StageStore) Unknown() ([]UnknownClient, error) {
	var out []UnknownClient
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(unknownBucket).ForEach(func(k, v []byte) error {
			var c UnknownClient
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tftpd unknown clients: %w", err)
	}
	return out, nil
}

// ForgetUnknown removes the entries of a client (e.g. once it was adopted
// as a node); key as Unknown's entries give it: serial, else MAC, else IP.
func (s *StageStore) ForgetUnknown(c UnknownClient) error {
	key := unknownKey(c)
	s.mu.Lock()
	delete(s.lastUnknown, key)
	s.mu.Unlock()
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(unknownBucket).Delete([]byte(key)) })
}
