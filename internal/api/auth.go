package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// sessionCookie carries a browser's proof of the token after it opened
// /?token=TOKEN once.
const sessionCookie = "pictl_session"

// cookieMaxAge keeps a browser signed in for 30 days.
const cookieMaxAge = 30 * 24 * 60 * 60

// tokenAuth guards the TCP listener: every request must carry the token,
// as "Authorization: Bearer TOKEN" (scripts), as the session cookie
// (browsers), or once as ?token=TOKEN, which sets the cookie and redirects
// to the same URL without the token, so it leaves the address bar and
// the history.
type tokenAuth struct {
	tokenSum   [sha256.Size]byte // sha256 of the token
	sessionSum [sha256.Size]byte // sha256 of the cookie value
	session    string            // the cookie value
	next       http.Handler
}

func newTokenAuth(token string, next http.Handler) *tokenAuth {
	// The cookie holds a value derived from the token rather than the
	// token itself: a cookie read off a browser is not the bearer token
	// scripts are configured with.
	s := sha256.Sum256([]byte("pictl session\x00" + token))
	a := &tokenAuth{tokenSum: sha256.Sum256([]byte(token)), session: hex.EncodeToString(s[:]), next: next}
	a.sessionSum = sha256.Sum256([]byte(a.session))
	return a
}

// matches compares in constant time; hashing first makes the comparison
// independent of the candidate's length too.
func matches(candidate string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(candidate))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (a *tokenAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if matches(strings.TrimSpace(cred), a.tokenSum) {
			proveConn(r)
			a.next.ServeHTTP(w, r)
			return
		}
		unauthorized(w, "the bearer token is wrong")
		return
	}
	q := r.URL.Query()
	if q.Has("token") {
		if !matches(q.Get("token"), a.tokenSum) {
			unauthorized(w, "the token in the URL is wrong")
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: a.session, Path: "/",
			MaxAge: cookieMaxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode,
			// Not Secure: the API is plain HTTP, where a browser would
			// drop a Secure cookie. SameSite=Strict keeps other sites'
			// pages from sending it (no cross-site POST of a reset).
		})
		q.Del("token")
		clean := r.URL.Path
		if !strings.HasPrefix(clean, "/") || strings.HasPrefix(clean, "//") || strings.HasPrefix(clean, "/\\") {
			clean = "/" // never a redirect to another host ("//host/...")
		}
		if len(q) > 0 {
			clean += "?" + q.Encode()
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, clean, http.StatusSeeOther)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil && matches(c.Value, a.sessionSum) {
		proveConn(r)
		a.next.ServeHTTP(w, r)
		return
	}
	unauthorized(w, "this pictl API needs its token")
}

func unauthorized(w http.ResponseWriter, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="pictl"`)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("401 unauthorized: " + why + ".\n" +
		"Print the token on the controller with `pictl api token`, then send it as\n" +
		"  Authorization: Bearer TOKEN\n" +
		"or open /?token=TOKEN once in a browser (`pictl api token --url` prints that link;\n" +
		"it sets a cookie and drops the token from the address).\n"))
}
