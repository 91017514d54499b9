package tftpd

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func openTestDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "runtime.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStageStore(t *testing.T) {
	db := openTestDB(t)
	s, err := NewStageStore(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2025, 5, 13, 10, 0, 0, 0, time.UTC)
	s.RecordStage(ctx, StageEvent{Node: "pi3", Stage: StageFirmware, File: "start.elf", Outcome: OutcomeOK, At: at})
	s.RecordStage(ctx, StageEvent{Node: "pi3", Stage: StageKernel, File: "kernel8.img", Outcome: OutcomeTimeout, Bytes: 4096, At: at.Add(time.Second)})
	s.RecordStage(ctx, StageEvent{Node: "pi4", Stage: StageConfig, File: "config.txt", Outcome: OutcomeOK, At: at})
	s.RecordUnknown(ctx, UnknownClient{IP: netip.MustParseAddr("10.0.0.9"), Serial: "ffffffff", File: "ffffffff/start4.elf", At: at})
	s.RecordUnknown(ctx, UnknownClient{IP: netip.MustParseAddr("10.0.0.9"), Serial: "ffffffff", File: "ffffffff/start4.elf", At: at.Add(time.Second)})

	// A second store on the same database (a controller restart) sees it all.
	s2, err := NewStageStore(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, ok, err := s2.LastStage("pi3")
	if err != nil || !ok || ev.Stage != StageKernel || ev.Outcome != OutcomeTimeout || ev.Bytes != 4096 || !ev.At.Equal(at.Add(time.Second)) {
		t.Errorf("pi3 last stage = %+v, %v, %v", ev, ok, err)
	}
	if _, ok, _ := s2.LastStage("nope"); ok {
		t.Error("stage for a node never seen")
	}
	all, err := s2.Stages()
	if err != nil || len(all) != 2 || all["pi4"].Stage != StageConfig {
		t.Errorf("Stages() = %+v, %v", all, err)
	}
	unknown, err := s2.Unknown()
	if err != nil || len(unknown) != 1 || unknown[0].Serial != "ffffffff" || !unknown[0].At.Equal(at) {
		t.Errorf("Unknown() = %+v, %v (the repeat within a minute is not rewritten)", unknown, err)
	}
	if err := s2.ForgetUnknown(unknown[0]); err != nil {
		t.Fatal(err)
	}
	if unknown, _ := s2.Unknown(); len(unknown) != 0 {
		t.Errorf("after ForgetUnknown: %+v", unknown)
	}
}
