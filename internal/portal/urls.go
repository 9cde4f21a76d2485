package portal

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// hostPort is the host (and port, if any) people reach this server by:
// the public URL's, else the request's Host when it is a DNS name or an
// IP address with a numeric port, else the address the request came in on
// (a Host header may carry characters, such as ' ( ) ;, that have no place
// in the URLs and snippets built from it).
func (p *Portal) hostPort(r *http.Request) (host, port string) {
	if p.publicURL != nil {
		return p.publicURL.Hostname(), p.publicURL.Port()
	}
	h := r.Host
	if hh, pp, err := net.SplitHostPort(h); err == nil {
		h, port = hh, pp
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if validPort(port) && (validIP(h) || validHostname(h)) {
		return h, port
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap().WithZone("").String(), strconv.Itoa(int(ap.Port()))
		}
	}
	return "127.0.0.1", ""
}

// host is hostPort's host.
func (p *Portal) host(r *http.Request) string {
	h, _ := p.hostPort(r)
	return h
}

func validIP(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == ""
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validPort: none, or a number from 1 to 65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0 && strconv.FormatUint(n, 10) == p
}

// bracket puts an IPv6 literal in brackets for a URL.
func bracket(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// baseURL is the portal's own URL, without a trailing slash.
func (p *Portal) baseURL(r *http.Request) string {
	if p.publicURL != nil {
		return p.publicURL.Scheme + "://" + p.publicURL.Host
	}
	scheme := "http"
	if p.secure(r) {
		scheme = "https"
	}
	host, port := p.hostPort(r)
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	return scheme + "://" + bracket(host)
}

// rtmfpURL is what a client connects to with a key.
func (p *Portal) rtmfpURL(r *http.Request, key string) string {
	host, port := p.host(r), p.cfg.RTMFPPort
	if len(p.cfg.PublicAddresses) > 0 {
		host, port = p.cfg.PublicAddresses[0].Addr().String(), p.cfg.PublicAddresses[0].Port()
	}
	hp := bracket(host)
	if port != 1935 {
		hp += ":" + strconv.Itoa(int(port))
	}
	return "rtmfp://" + hp + "/" + key
}
