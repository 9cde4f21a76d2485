package portal

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// host is the name people reach this server by: the public URL's, else
// the request's Host (validated: a DNS name or an IP address).
func (p *Portal) host(r *http.Request) string {
	if p.publicURL != nil {
		return p.publicURL.Hostname()
	}
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if _, err := netip.ParseAddr(h); err == nil || validHostname(h) {
		return h
	}
	return "127.0.0.1"
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
	host := r.Host
	if host == "" || strings.ContainsAny(host, "/\\@ ") {
		host = "127.0.0.1"
	}
	return scheme + "://" + host
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

// welcomeData is the page shown once after sign-up.
type welcomeData struct {
	signedUp
	ActionScript, Go string
}

func (p *Portal) welcome(s signedUp) welcomeData {
	return welcomeData{signedUp: s,
		ActionScript: `var nc:NetConnection = new NetConnection();
nc.addEventListener(NetStatusEvent.NET_STATUS, function (e:NetStatusEvent):void {
    trace(e.info.code, nc.nearID); // NetConnection.Connect.Success, your peer ID
});
nc.connect("` + s.URL + `");
// VideoPhone-style applications: WebServiceUrl = "` + s.ExchangeURL + `"`,
		Go: `// import "github.com/stratus-rtmfp/stratus/rtmfp"
nc, err := rtmfp.Connect(ctx, "` + s.URL + `", nil)
if err != nil {
    log.Fatal(err)
}
defer nc.Close()
fmt.Println("my peer ID:", nc.NearID())
nc.RegisterName(ctx, "alice") // friends find it with nc.LookupName(ctx, "alice")`,
	}
}
