package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/portal"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

// defaultHTTP is the developer portal's listener: loopback, so that a
// newcomer sees it at once and nobody else does until the operator says so.
const defaultHTTP = "127.0.0.1:8080"

type webOpts struct {
	listen, publicURL, terms string
	proxies                  listFlag
	signups, signupsTotal    int
}

func webFlags(fs *flag.FlagSet, cfg *server.Config, o *webOpts) {
	fs.StringVar(&o.listen, "http", defaultHTTP, "developer portal and peer-ID exchange (HTTP); \"off\" disables it")
	fs.StringVar(&o.publicURL, "http-public-url", "", "URL people reach the portal at, e.g. https://stratus.example.com behind a TLS proxy (Secure cookies, links)")
	fs.Var(&o.proxies, "http-trusted-proxy", "address or CIDR of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto are believed, repeatable")
	fs.IntVar(&o.signups, "signup-rate", 10, "sign-ups per hour per source network (IPv4 /24, IPv6 /48); 0 closes sign-up, -1: no limit")
	fs.IntVar(&o.signupsTotal, "signup-rate-total", portal.DefaultSignupsPerHourTotal, "sign-ups per hour from all networks together; 0 closes sign-up, -1: no limit")
	fs.StringVar(&o.terms, "terms", "", "text file with the operator's terms of service, shown at sign-up (default: a short generic text)")
	fs.IntVar(&cfg.ExchangeMaxNamesPerKey, "exchange-max-names", 10000, "names the peer-ID exchange holds per developer key (that many registered on the NetConnection, as many again over HTTP)")
	fs.IntVar(&cfg.ExchangeMaxNamesPerPeer, "exchange-max-names-per-peer", 8, "names one peer may hold in the peer-ID exchange (that many of its own, as many again registered for it over HTTP)")
}

// startWeb serves the portal on --http, or nothing with "off".
func startWeb(o *webOpts, srv *server.Server, st store.Store, cfg *server.Config, rtmfpConn net.PacketConn, token string, log *slog.Logger) (*http.Server, error) {
	if o.listen == "" || o.listen == "off" {
		return nil, nil
	}
	accts, ok := st.(store.Accounts)
	if !ok {
		return nil, errors.New("the developer portal needs a store with accounts")
	}
	var proxies []netip.Prefix
	for _, p := range o.proxies {
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			a, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return nil, fmt.Errorf("--http-trusted-proxy %q: want an address or a CIDR", p)
			}
			pr = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		proxies = append(proxies, pr.Masked())
	}
	terms := ""
	if o.terms != "" {
		b, err := os.ReadFile(o.terms)
		if err != nil {
			return nil, fmt.Errorf("--terms: %w", err)
		}
		terms = string(b)
	}
	port := uint16(1935)
	if ua, ok := rtmfpConn.LocalAddr().(*net.UDPAddr); ok {
		port = uint16(ua.Port)
	}
	signups := o.signups
	if o.signupsTotal == 0 {
		signups = 0 // closed (portal.Config takes 0 there for the default)
	}
	p, err := portal.New(portal.Config{Server: srv, Accounts: accts, AdminToken: token, RTMFPPort: port,
		PublicAddresses: cfg.PublicAddresses, PublicURL: o.publicURL, TrustedProxies: proxies,
		SignupsPerHour: signups, SignupsPerHourTotal: o.signupsTotal, Terms: terms, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("portal listener (--http): %w", err)
	}
	hs := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	go hs.Serve(ln)
	log.Info("developer portal", "http", "http://"+ln.Addr().String()+"/")
	fmt.Printf("Developer portal (sign-up, dashboards, peer-ID exchange): http://%s/\n", ln.Addr())
	return hs, nil
}
