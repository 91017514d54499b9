package api

import (
	"context"
	"net/http"
	"net/url"
)

// QuarantineClearer is the optional part of a Backend that ends an
// address's DHCPDECLINE quarantine.
type QuarantineClearer interface {
	// ClearQuarantine frees the reserved address of node target, or the
	// address target itself. Errors that say NotFound() become 404.
	ClearQuarantine(ctx context.Context, target string) (Cleared, error)
}

// Cleared answers POST /v1/nodes/{name}/clear-quarantine.
type Cleared struct {
	Target  string `json:"target" yaml:"target"`
	Address string `json:"address" yaml:"address"`
	// WasQuarantined is false when the address was not quarantined
	// (nothing to do).
	WasQuarantined bool `json:"was_quarantined" yaml:"was_quarantined"`
}

func (s *Server) routeQuarantine(b Backend) {
	qc, ok := b.(QuarantineClearer)
	if !ok {
		return
	}
	s.mux.HandleFunc("POST /v1/nodes/{name}/clear-quarantine", func(w http.ResponseWriter, r *http.Request) {
		res, err := qc.ClearQuarantine(r.Context(), r.PathValue("name"))
		if err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// ClearQuarantine asks POST /v1/nodes/{target}/clear-quarantine.
func (c *Client) ClearQuarantine(ctx context.Context, target string) (Cleared, error) {
	var res Cleared
	err := c.do(ctx, c.slow, http.MethodPost, "/v1/nodes/"+url.PathEscape(target)+"/clear-quarantine", &res)
	return res, err
}
