package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

// Defaults, also shown in the README.
const (
	defaultData  = "./stratus-data"
	defaultAdmin = "127.0.0.1:8935"
	// adminAddrFile, in the data directory, holds the running server's
	// admin address for "stratus keys".
	adminAddrFile = "admin.addr"
)

func serverFlags(fs *flag.FlagSet) (*server.Config, *serveOpts) {
	cfg := &server.Config{}
	o := &serveOpts{}
	fs.Var(&o.listen, "listen", "UDP address to listen on, repeatable (default 0.0.0.0:1935 and [::]:1935)")
	fs.StringVar(&o.data, "data", defaultData, "data directory (bbolt database of developer keys and usage)")
	fs.StringVar(&o.admin, "admin", defaultAdmin, "admin HTTP listener (metrics, health, JSON API, pprof); \"off\" disables it")
	fs.StringVar(&o.adminToken, "admin-token-file", "", "file holding the admin API's bearer token (default DATA/admin.token, created at first start)")
	fs.BoolVar(&cfg.Open, "open", false, "accept any developer key")
	fs.Var(&o.public, "public-address", "address:port clients reach this server at (behind NAT or a load balancer), repeatable")
	fs.DurationVar(&cfg.ClientKeepalive, "client-keepalive", 15*time.Second, "keepalive period clients use towards the server (sent in set-keepalive 0x29; at least 5s)")
	fs.DurationVar(&cfg.PeerKeepalive, "peer-keepalive", 10*time.Second, "keepalive period clients use towards their peers (sent in 0x29; at least 5s)")
	fs.DurationVar(&cfg.ReapAfter, "reap-after", 0, "drop a client silent for this long (default 4 × client-keepalive)")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 30*time.Second, "close sessions that have not connected by then")
	fs.BoolVar(&cfg.RefuseAnonymousLookups, "refuse-anonymous-lookups", false, "introduce only initiators that are connected clients of the same developer key")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", 200000, "maximum sessions in all (-1: no limit)")
	fs.IntVar(&cfg.MaxSessionsPerIP, "max-sessions-per-ip", 256, "maximum sessions from one IP address (-1: no limit)")
	fs.IntVar(&cfg.MaxSessionsPerKey, "max-sessions-per-key", -1, "maximum connected clients per developer key (-1: no limit)")
	fs.Float64Var(&cfg.HandshakeRate, "handshake-rate", 50, "keying handshakes per second per source IP (-1: no limit)")
	fs.IntVar(&cfg.HandshakeBurst, "handshake-burst", 100, "burst for --handshake-rate")
	fs.Float64Var(&cfg.HelloRate, "hello-rate", 50000, "handshake replies (RHello) per second in all (-1: no limit)")
	fs.Float64Var(&cfg.HelloRatePerPrefix, "hello-rate-per-prefix", 200, "RHellos, and Redirects to lookups from addresses without a session, per second per source IPv4 /24 or IPv6 /48 (bursts of twice as many; -1: no limit)")
	fs.Float64Var(&cfg.LookupRate, "lookup-rate", 50000, "peer-ID lookups answered (introductions) per second in all (-1: no limit)")
	fs.IntVar(&cfg.MaxPeerAddresses, "max-peer-addresses", 8, "setPeerInfo addresses kept per client")
	fs.IntVar(&cfg.MaxGroupsPerSession, "max-groups-per-session", 8, "NetGroups (GC flows) per session (-1: no limit)")
	fs.IntVar(&cfg.MaxGroupMembers, "max-group-members", 500000, "NetGroup memberships in all, every session's groups together (-1: no limit)")
	fs.Float64Var(&cfg.GroupMessageRate, "group-message-rate", 5, "NetGroup server channel budget per session: GC flow opens and GC messages per second, all its flows together, bursts of twice that and at least two per group it may hold (-1: no limit)")
	fs.DurationVar(&o.drain, "drain-timeout", 10*time.Second, "on SIGTERM, how long to wait for clients to close")
	o.policy = policyFlags(fs)
	webFlags(fs, cfg, &o.web)
	clusterFlags(fs, &o.cluster)
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.config, "config", "", "config file of \"name = value\" lines, names as the flags")
	return cfg, o
}

type serveOpts struct {
	listen, public             listFlag
	data, admin, level, format string
	adminToken                 string
	config                     string
	drain                      time.Duration
	policy                     policyOpts
	web                        webOpts
	cluster                    clusterOpts
}

func runServer(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cfg, o := serverFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applySettings(fs, o.config); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	log, err := newLogger(o.level, o.format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.RequireHMAC, cfg.RequireSequenceNumbers = o.policy.requireHMAC(), o.policy.requireSeq()
	for _, p := range o.public {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			return fmt.Errorf("--public-address %q: %w", p, err)
		}
		cfg.PublicAddresses = append(cfg.PublicAddresses, ap)
	}
	if cfg.Cluster, err = clusterConfig(&o.cluster, o.data, log); err != nil {
		return err
	}
	st, err := store.OpenBolt(o.data, time.Second)
	if err != nil {
		return fmt.Errorf("opening %s: %w", o.data, err)
	}
	defer st.Close()
	cfg.Store = st
	listen := []string(o.listen)
	if len(listen) == 0 {
		listen = []string{"0.0.0.0:1935", "[::]:1935"}
	}
	srv, err := server.New(*cfg)
	if err != nil {
		return err
	}
	if cfg.Cluster != nil {
		if err := writeClusterMarker(o.data, cfg.Cluster, srv.ClusterNode()); err != nil {
			srv.Close()
			return err
		}
		log.Info("cluster node", "node", srv.ClusterNode(), "cluster", cfg.Cluster.Name, "routes", srv.ClusterRouteAddr(), "nats", cfg.Cluster.NATSURL)
	} else {
		// A standalone server again: its data directory is its own.
		_ = os.Remove(filepath.Join(o.data, clusterMarkerFile))
	}
	var conns []net.PacketConn
	for _, addr := range listen {
		network := "udp4"
		if ua, err := net.ResolveUDPAddr("udp", addr); err == nil && ua.IP != nil && ua.IP.To4() == nil {
			network = "udp6"
		}
		conn, err := net.ListenPacket(network, addr)
		if err != nil {
			if len(o.listen) == 0 && network == "udp6" {
				log.Warn("IPv6 listener unavailable", "addr", addr, "err", err)
				continue
			}
			return err
		}
		conns = append(conns, conn)
	}
	if len(conns) == 0 {
		return errors.New("no UDP listener")
	}
	fp := srv.Fingerprint()
	log.Info("stratus", "fingerprint", fmt.Sprintf("%x", fp[:]), "data", st.Path(), "open", cfg.Open)
	// A cluster's keys are made once for all nodes, with stratus keys
	// create against any running node (nodes starting together would each
	// make a "first key").
	if cfg.Cluster == nil {
		if err := firstKey(srv, cfg, conns[0]); err != nil {
			return err
		}
	}
	for i, c := range conns {
		if err := srv.Listen(c); err != nil {
			for _, rest := range conns[i+1:] {
				rest.Close()
			}
			srv.Close()
			return fmt.Errorf("serving %s: %w", c.LocalAddr(), err)
		}
	}
	tokenPath := adminTokenPath(o.data, o.adminToken)
	token, created, err := loadOrCreateToken(tokenPath)
	if err != nil {
		srv.Close()
		return fmt.Errorf("admin token: %w", err)
	}
	if created {
		log.Info("created the admin API token", "file", tokenPath)
	}
	var admin *http.Server
	if o.admin != "" && o.admin != "off" {
		ln, err := net.Listen("tcp", o.admin)
		if err != nil {
			srv.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		admin = &http.Server{Handler: srv.Admin(server.AdminOptions{Token: token, Addr: ln.Addr().String()}), ReadHeaderTimeout: 10 * time.Second}
		go admin.Serve(ln)
		log.Info("admin API", "http", "http://"+ln.Addr().String(), "token_file", tokenPath)
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			log.Warn("THE ADMIN API IS NOT ON LOOPBACK: anyone who reaches " + ln.Addr().String() +
				" and holds the token can create and revoke keys and read every session; keep --admin on 127.0.0.1 or firewall it")
		}
		// Tell "stratus keys" where to find us while we hold the database.
		adminFile := filepath.Join(o.data, adminAddrFile)
		_ = os.WriteFile(adminFile, []byte(ln.Addr().String()+"\n"), 0o600)
		defer os.Remove(adminFile)
	}
	web, err := startWeb(&o.web, srv, srv.Store(), cfg, conns[0], token, log) // the cluster's store in a cluster
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		srv.Close()
		return err
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	s := <-sig
	if s == syscall.SIGTERM {
		log.Info("draining", "timeout", o.drain)
		ctx, cancel := context.WithTimeout(context.Background(), o.drain)
		go func() { // a second signal stops at once
			<-sig
			cancel()
		}()
		srv.Shutdown(ctx)
		cancel()
	} else {
		srv.Close()
	}
	if admin != nil {
		admin.Close()
	}
	if web != nil {
		web.Close()
	}
	log.Info("stopped")
	return nil
}

// firstKey creates a developer key on a first start so that a newcomer
// can connect at once, and prints it with a ready URL.
func firstKey(srv *server.Server, cfg *server.Config, conn net.PacketConn) error {
	keys, err := srv.Keys()
	if err != nil || len(keys) > 0 {
		return err
	}
	k, err := srv.CreateKey("first key")
	if err != nil {
		return err
	}
	host := "127.0.0.1"
	port := uint16(1935)
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		port = uint16(ua.Port)
		if ip, ok := netip.AddrFromSlice(ua.IP); ok && !ip.IsUnspecified() {
			host = ip.Unmap().String()
		}
	}
	if len(cfg.PublicAddresses) > 0 {
		host, port = cfg.PublicAddresses[0].Addr().String(), cfg.PublicAddresses[0].Port()
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	url := "rtmfp://" + host + "/" + k.ID
	if port != 1935 {
		url = fmt.Sprintf("rtmfp://%s:%d/%s", host, port, k.ID)
	}
	fmt.Printf("\nNo developer keys yet: created one.\n  developer key: %s\n  connect with:  %s\n\n", k.ID, url)
	return nil
}
