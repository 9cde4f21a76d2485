package server

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
)

// AdminOptions secure the admin API (Server.Admin).
type AdminOptions struct {
	// Token is the bearer token every request but GET /healthz must carry
	// ("Authorization: Bearer TOKEN"). An empty Token refuses them all:
	// the API fails closed.
	Token string
	// Addr is the address the handler is served on, as net.Listen takes
	// it with a numeric port ("127.0.0.1:8935", "[::1]:8935",
	// "localhost:8935", or ":8935" for every address); the listener's own
	// Addr().String() is the safest. A request whose Host header names
	// anything else is refused (421), so that a web page cannot reach the
	// API through DNS rebinding: the host must be "localhost" (on a
	// loopback or every-address listener) or an IP literal (the
	// listener's own, or any on an every-address listener), and the port
	// Addr's. Other host names cannot be checked without DNS, so an Addr
	// naming one, or one that does not parse, is an error: the server
	// logs it and the handler answers every request 500 with the reason.
	// Empty Addr: any IP literal or localhost, any port.
	Addr string
}

// adminGuard applies AdminOptions in front of the admin routes: Host
// check, then the bearer token (except /healthz), then a JSON content
// type on writes to /api/ (a cross-site form cannot send one without a
// CORS preflight, which this API never grants).
type adminGuard struct {
	next   http.Handler
	token  httpx.Token // none configured: every request is refused
	listen netip.AddrPort
	anyIP  bool  // no Addr given
	bad    error // Addr unusable: every request is answered with it
}

func newAdminGuard(next http.Handler, o AdminOptions) *adminGuard {
	g := &adminGuard{next: next, token: httpx.NewToken(o.Token)}
	if o.Addr == "" {
		g.anyIP = true
	} else {
		g.listen, g.bad = parseAdminAddr(o.Addr)
	}
	return g
}

// parseAdminAddr reads AdminOptions.Addr: an empty host is every address,
// localhost is 127.0.0.1.
func parseAdminAddr(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("admin API: AdminOptions.Addr %q: want HOST:PORT (%v)", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("admin API: AdminOptions.Addr %q: want a port number from 1 to 65535 (the listener's)", addr)
	}
	var ip netip.Addr
	switch {
	case host == "":
		ip = netip.IPv6Unspecified() // every address
	case strings.EqualFold(host, "localhost"):
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("admin API: AdminOptions.Addr %q: the host must be an IP address, localhost or empty (a DNS name cannot be checked against the Host header)", addr)
		}
	}
	return netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(p)), nil
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.bad != nil {
		http.Error(w, g.bad.Error(), http.StatusInternalServerError)
		return
	}
	if !g.hostAllowed(r.Host) {
		http.Error(w, "admin API: the Host header must name this listener (an IP address or localhost)", http.StatusMisdirectedRequest)
		return
	}
	if r.URL.Path == "/healthz" {
		g.next.ServeHTTP(w, r)
		return
	}
	if !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stratus admin"`)
		httpx.WriteError(w, http.StatusUnauthorized, "admin API: missing or wrong bearer token (see admin.token in the data directory)")
		return
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		if strings.HasPrefix(r.URL.Path, "/api/") && !isJSON(r.Header.Get("Content-Type")) {
			httpx.WriteError(w, http.StatusUnsupportedMediaType, "admin API: writes need Content-Type: application/json")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *adminGuard) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && g.token.Matches(strings.TrimSpace(tok))
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// hostAllowed reports whether a Host header names the listener.
func (g *adminGuard) hostAllowed(hostport string) bool {
	host, port := hostport, "80"
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return false
	}
	if g.anyIP {
		_, err := netip.ParseAddr(host)
		return err == nil || strings.EqualFold(host, "localhost")
	}
	if uint16(p) != g.listen.Port() {
		return false
	}
	la := g.listen.Addr()
	if strings.EqualFold(host, "localhost") {
		return la.IsLoopback() || la.IsUnspecified()
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return false
	}
	return la.IsUnspecified() || ip.Unmap() == la
}
