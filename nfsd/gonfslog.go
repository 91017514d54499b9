package nfsd

import (
	"context"
	"fmt"
	"log/slog"

	nfs "github.com/willscott/go-nfs"
)

// GoNFSLogger adapts an slog.Logger to go-nfs's package-global logger, for
// main to install once: nfs.SetLogger(nfsd.GoNFSLogger(log)). go-nfs
// errors become warnings (nfsd reports what matters itself), its info
// becomes debug; trace output is dropped unless the level is raised.
func GoNFSLogger(l *slog.Logger) nfs.Logger {
	return &goNFSLogger{l: l.With("component", "go-nfs"), level: nfs.InfoLevel}
}

type goNFSLogger struct {
	l     *slog.Logger
	level nfs.LogLevel
}

func (g *goNFSLogger) SetLevel(level nfs.LogLevel) { g.level = level }
func (g *goNFSLogger) GetLevel() nfs.LogLevel      { return g.level }
func (g *goNFSLogger) ParseLevel(s string) (nfs.LogLevel, error) {
	return (&nfs.DefaultLogger{}).ParseLevel(s)
}

func (g *goNFSLogger) log(level nfs.LogLevel, sl slog.Level, msg string) {
	if level > g.level {
		return
	}
	g.l.Log(context.Background(), sl, msg)
}

func (g *goNFSLogger) Panic(args ...any) { msg := fmt.Sprint(args...); g.l.Error(msg); panic(msg) }
func (g *goNFSLogger) Fatal(args ...any) { msg := fmt.Sprint(args...); g.l.Error(msg); panic(msg) }
func (g *goNFSLogger) Error(args ...any) { g.log(nfs.ErrorLevel, slog.LevelWarn, fmt.Sprint(args...)) }
func (g *goNFSLogger) Warn(args ...any)  { g.log(nfs.WarnLevel, slog.LevelWarn, fmt.Sprint(args...)) }
func (g *goNFSLogger) Info(args ...any)  { g.log(nfs.InfoLevel, slog.LevelDebug, fmt.Sprint(args...)) }
func (g *goNFSLogger) Debug(args ...any) { g.log(nfs.DebugLevel, slog.LevelDebug, fmt.Sprint(args...)) }
func (g *goNFSLogger) Trace(args ...any) { g.log(nfs.TraceLevel, slog.LevelDebug, fmt.Sprint(args...)) }
func (g *goNFSLogger) Print(args ...any) { g.log(nfs.InfoLevel, slog.LevelDebug, fmt.Sprint(args...)) }

func (g *goNFSLogger) Panicf(f string, args ...any) { g.Panic(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Fatalf(f string, args ...any) { g.Fatal(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Errorf(f string, args ...any) { g.Error(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Warnf(f string, args ...any)  { g.Warn(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Infof(f string, args ...any)  { g.Info(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Debugf(f string, args ...any) { g.Debug(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Tracef(f string, args ...any) { g.Trace(fmt.Sprintf(f, args...)) }
func (g *goNFSLogger) Printf(f string, args ...any) { g.Print(fmt.Sprintf(f, args...)) }
