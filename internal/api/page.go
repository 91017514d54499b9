package api

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

//go:embed status.html
var statusHTML string

// pageData is what status.html renders.
type pageData struct {
	Now        time.Time
	Status     Status
	Nodes      []Node
	Discovered []Discovered
	Errors     []string // what the backend could not answer
}

func parseStatusPage() *template.Template {
	return template.Must(template.New("status").Funcs(template.FuncMap{
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return short(now.Sub(t)) + " ago"
		},
		"until": func(now, t time.Time) string {
			if t.IsZero() {
				return ""
			}
			if t.Before(now) {
				return "expired"
			}
			return "for " + short(t.Sub(now))
		},
		"stamp": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Format(time.RFC3339)
		},
		// address is where the node is reachable: where it was seen, else
		// its reservation.
		"address": func(n Node) string {
			if n.Runtime != nil && n.Runtime.Address != "" {
				return n.Runtime.Address
			}
			if n.IP != "" {
				return n.IP + " (reserved)"
			}
			return "–"
		},
	}).Parse(statusHTML))
}

// short writes a duration as a person glances at it: 42s, 12m5s, 3h12m,
// 2d4h.
func short(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < 0:
		return "-" + short(-d)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// statusPage serves GET /: the nodes, discovered clients and components,
// for a person with a browser. html/template escapes every value (node
// names, MACs, error texts come from files and the network).
func statusPage(b Backend) http.HandlerFunc {
	tmpl := parseStatusPage()
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		d := pageData{Now: time.Now(), Status: b.Status(ctx)}
		var err error
		if d.Nodes, err = b.Nodes(ctx); err != nil {
			d.Errors = append(d.Errors, fmt.Sprintf("nodes: %v", err))
		}
		if d.Discovered, err = b.Discovered(ctx); err != nil {
			d.Errors = append(d.Errors, fmt.Sprintf("discovered clients: %v", err))
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, d); err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// No scripts, no frames, nothing fetched from elsewhere.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(buf.Bytes())
	}
}
