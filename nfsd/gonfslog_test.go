package nfsd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestGoNFSLogger(t *testing.T) {
	var buf bytes.Buffer
	l := GoNFSLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	l.Errorf("err loading attrs for %s", "/x")
	l.Infof("chatty %d", 1)
	l.Tracef("very chatty")
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "err loading attrs for /x") || !strings.Contains(out, "component=go-nfs") {
		t.Fatalf("got %q", out)
	}
	if strings.Contains(out, "chatty") {
		t.Fatalf("info/trace leaked at warn level: %q", out)
	}
}
