package api

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

//go:embed status.html
var statusHTML string

// pageData is what status.html renders.
type pageData struct {
	Now        time.Time
	Status     Status
	Nodes      []Node
	Discovered []Discovered // this page of them
	Errors     []string     // what the backend could not answer
	Balancer   *Balancer    // nil when no balancer runs
	// NodesPage and DiscoveredPage say which page of each list is shown:
	// a flood of forged clients must not make the page megabytes long.
	NodesPage, DiscoveredPage pager
}

// PageSize is how many rows of a list the status page shows at once.
const PageSize = 50

// pager is one page of a list: Page counts from 1; Prev and Next are the
// links to the neighbours ("" at the ends).
type pager struct {
	Page, Pages, Total, From, To int
	Prev, Next                   string
}

// paginate picks page (the query parameter param, 1-based) of a list of
// total rows; the other parameters of q stay in the links.
func paginate(q url.Values, param string, total int) pager {
	p := pager{Total: total, Pages: max(1, (total+PageSize-1)/PageSize), Page: 1}
	if n, err := strconv.Atoi(q.Get(param)); err == nil && n >= 1 {
		p.Page = min(n, p.Pages)
	}
	p.From = min((p.Page-1)*PageSize, total)
	p.To = min(p.From+PageSize, total)
	link := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set(param, strconv.Itoa(n))
		return "/?" + v.Encode()
	}
	if p.Page > 1 {
		p.Prev = link(p.Page - 1)
	}
	if p.Page < p.Pages {
		p.Next = link(p.Page + 1)
	}
	return p
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
		"inc": func(n int) int { return n + 1 },
		// latency is a balancer member's percentile, "–" before any request.
		"latency": func(s float64) string {
			if s <= 0 {
				return "–"
			}
			d := time.Duration(s * float64(time.Second))
			if d < time.Millisecond {
				return d.Round(time.Microsecond).String()
			}
			return d.Round(10 * time.Microsecond).String()
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
		if bb, ok := b.(BalancerBackend); ok {
			if st, ok := bb.Balancer(ctx); ok {
				d.Balancer = &st
			}
		}
		// The most recently seen clients first: those are the ones a
		// person powering on a new Pi looks for.
		slices.SortStableFunc(d.Discovered, func(a, b Discovered) int { return b.LastSeen.Compare(a.LastSeen) })
		q := r.URL.Query()
		q.Del("token")
		d.NodesPage = paginate(q, "nodes_page", len(d.Nodes))
		d.Nodes = d.Nodes[d.NodesPage.From:d.NodesPage.To]
		d.DiscoveredPage = paginate(q, "discovered_page", len(d.Discovered))
		d.Discovered = d.Discovered[d.DiscoveredPage.From:d.DiscoveredPage.To]
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
