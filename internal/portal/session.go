package portal

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Session lifetimes and bounds.
const (
	sessionTTL  = 12 * time.Hour
	maxSessions = 100000
)

// session is a signed-in browser: a developer (account) or the operator.
// Sessions live in memory: a restart signs everyone out.
type session struct {
	account  string
	operator bool
	csrf     string
	expires  time.Time
	elem     *list.Element // in sessions.order
}

type sessions struct {
	now   func() time.Time
	max   int
	mu    sync.Mutex
	m     map[string]*session
	order *list.List // session IDs, oldest first: every session lives sessionTTL, so also the first to expire
}

func newSessions(now func() time.Time, max int) *sessions {
	return &sessions{now: now, max: max, m: map[string]*session{}, order: list.New()}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start creates a session and returns its cookie value.
func (ss *sessions) start(account string, operator bool) (string, *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	// Full: the oldest sessions go, expired ones first since they are
	// the oldest.
	for len(ss.m) >= ss.max && ss.order.Len() > 0 {
		ss.remove(ss.order.Front().Value.(string))
	}
	id := randomHex(32)
	s := &session{account: account, operator: operator, csrf: randomHex(32), expires: now.Add(sessionTTL)}
	s.elem = ss.order.PushBack(id)
	ss.m[id] = s
	return id, s
}

// remove forgets a session; ss.mu held.
func (ss *sessions) remove(id string) {
	if s := ss.m[id]; s != nil {
		ss.order.Remove(s.elem)
		delete(ss.m, id)
	}
}

func (ss *sessions) lookup(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[id]
	if s != nil && ss.now().After(s.expires) {
		ss.remove(id)
		return nil
	}
	return s
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	ss.remove(id)
	ss.mu.Unlock()
}

// Cookie names: over HTTPS the __Host- prefix pins them to this host and
// path with the Secure flag.
func (p *Portal) cookieName(r *http.Request, base string) string {
	if p.secure(r) {
		return "__Host-" + base
	}
	return base
}

func (p *Portal) setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: p.cookieName(r, base), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode})
}

func (p *Portal) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(p.cookieName(r, base))
	if err != nil || len(c.Value) != 64 {
		return ""
	}
	return c.Value
}

// sessionKey carries a session started during a request to the rest of
// that request (the page after sign-up is rendered signed in).
type sessionKey struct{}

func withSession(r *http.Request, s *session) context.Context {
	return context.WithValue(r.Context(), sessionKey{}, s)
}

// session returns the signed-in session of a request, or nil.
func (p *Portal) session(r *http.Request) *session {
	if s, ok := r.Context().Value(sessionKey{}).(*session); ok {
		return s
	}
	id := p.cookie(r, "stratus_session")
	if id == "" {
		return nil
	}
	return p.sessions.lookup(id)
}

// signIn starts a session, sets its cookie, and makes the rest of this
// request see it.
func (p *Portal) signIn(w http.ResponseWriter, r *http.Request, account string, operator bool) *http.Request {
	if old := p.cookie(r, "stratus_session"); old != "" {
		p.sessions.end(old) // no session fixation
	}
	id, s := p.sessions.start(account, operator)
	p.setCookie(w, r, "stratus_session", id, int(sessionTTL/time.Second))
	return r.WithContext(withSession(r, s))
}

// csrfToken is the token forms carry: the session's once signed in, else
// a random one also kept in a cookie (double submit).
func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if s := p.session(r); s != nil {
		return s.csrf
	}
	if t := p.cookie(r, "stratus_csrf"); t != "" {
		return t
	}
	t := randomHex(32)
	p.setCookie(w, r, "stratus_csrf", t, 0)
	return t
}

// checkCSRF compares the form's token with the expected one.
func (p *Portal) checkCSRF(r *http.Request) bool {
	want := ""
	if s := p.session(r); s != nil {
		want = s.csrf
	} else {
		want = p.cookie(r, "stratus_csrf")
	}
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// secure reports whether the browser reached us over HTTPS.
func (p *Portal) secure(r *http.Request) bool {
	if r.TLS != nil || p.publicURL != nil && p.publicURL.Scheme == "https" {
		return true
	}
	return p.trusted(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func (p *Portal) trustedAddr(a netip.Addr) bool {
	for _, pr := range p.cfg.TrustedProxies {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

func (p *Portal) trusted(r *http.Request) bool { return p.trustedAddr(remoteAddr(r)) }

// clientIP is the address a request came from: the connection's, or,
// through trusted proxies, the last X-Forwarded-For hop they did not add.
func (p *Portal) clientIP(r *http.Request) netip.Addr {
	a := remoteAddr(r)
	if !p.trustedAddr(a) {
		return a
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a
		}
		if h = h.Unmap(); !p.trustedAddr(h) {
			return h
		}
	}
	return a
}
