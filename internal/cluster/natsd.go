package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsUser is the user name of every NATS credential the cluster uses
// (routes and clients); the password is the shared secret.
const natsUser = "stratus"

// embedded is the nats-server a node runs in its own process: routes to
// the other nodes on Listen, JetStream on disk. The node's own connection
// is in-process. nats-server starts its routes only once its client
// listener is up (DontListen leaves them waiting for ever), so it has one,
// on a random loopback port, behind the same credentials; it is advertised
// to nobody.
type embedded struct {
	srv    *natsd.Server
	routes int // seed routes to other servers than this one
}

// startEmbedded starts the node's NATS server and waits until it accepts
// the in-process connection.
func startEmbedded(cfg *Config, secret string, log *slog.Logger) (*embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = natsd.RANDOM_PORT // nats-server takes 0 to mean no routes at all
	}
	opts := &natsd.Options{
		ServerName: cfg.Node,
		Host:       "127.0.0.1",
		Port:       natsd.RANDOM_PORT,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// The cluster's own credentials for clients (the in-process
		// connection authenticates like any other).
		Username: natsUser,
		Password: secret,
		Cluster: natsd.ClusterOpts{
			Name: cfg.ClusterName, Host: host, Port: port,
			Username: natsUser, Password: secret, AuthTimeout: 2,
			TLSConfig: cfg.RouteTLS, TLSTimeout: 2,
			NoAdvertise: true, // client URLs are nobody's business
		},
		// Messages are small; the directory snapshot is sent in parts.
		MaxPayload: 1 << 20,
	}
	if cfg.RouteTLS != nil {
		// Both ends present and verify certificates (mutual TLS).
		opts.Cluster.TLSConfig = cfg.RouteTLS.Clone()
	}
	self := net.JoinHostPort(host, strconv.Itoa(port))
	routes := 0
	for _, r := range cfg.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls") {
			return nil, fmt.Errorf("cluster route %q: want nats-route://HOST:PORT", r)
		}
		u.User = url.UserPassword(natsUser, secret)
		opts.Routes = append(opts.Routes, u)
		if u.Host != self {
			routes++
		}
	}
	if len(opts.Routes) == 0 {
		// JetStream in a cluster wants routes: a node given none (the
		// first of a cluster that others will route to) routes to itself.
		if port == natsd.RANDOM_PORT {
			return nil, errors.New("cluster: with no seed routes, the cluster listen address needs a port")
		}
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: self, User: url.UserPassword(natsUser, secret)})
	}
	s, err := natsd.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting NATS: %w", err)
	}
	nl := natsLogger{log: log, fatal: new(atomic.Value)}
	s.SetLoggerV2(nl, false, false, false)
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("cluster: the embedded NATS server did not start (is the cluster port free?)")
	}
	if msg, ok := nl.fatal.Load().(string); ok {
		s.Shutdown()
		return nil, fmt.Errorf("cluster: the embedded NATS server failed: %s", msg)
	}
	return &embedded{srv: s, routes: routes}, nil
}

// routeAddr is where the embedded server accepts routes (the port chosen
// when Listen asked for port 0).
func (e *embedded) routeAddr() string {
	if a := e.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// stop shuts the server down and waits for it.
func (e *embedded) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// connectOptions are the node's NATS connection settings: the shared
// secret as password, reconnecting for ever (a node rejoins without a
// restart), handlers that keep the node's view of the connection.
func connectOptions(name, secret string, tlsCfg *tls.Config, n *Node) []nats.Option {
	opts := []nats.Option{
		nats.Name("stratus " + name),
		nats.UserInfo(natsUser, secret),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 500*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		// While disconnected, publishing fails at once instead of
		// buffering stale directory changes: a snapshot follows the
		// reconnection anyway.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.connChanged(false, err) }),
		nats.ReconnectHandler(func(*nats.Conn) { n.connChanged(true, nil) }),
		nats.ConnectHandler(func(*nats.Conn) { n.connChanged(true, nil) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			n.log.Warn("cluster: NATS error", "subject", subj, "err", err)
		}),
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg.Clone()))
	}
	return opts
}

// natsLogger sends the embedded server's log to slog, a level down: its
// notices (a dozen lines at every start) at debug level, its warnings
// (waiting for routes or a JetStream leader, normal at start) at info,
// its errors as warnings, except the attempts to reach a route that is
// down, which repeat every second (the node logs once when another node
// goes silent, and /healthz and the metrics say when none is reachable).
type natsLogger struct {
	log   *slog.Logger
	fatal *atomic.Value // the first fatal error, which the node reports
}

func (l natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Debugf(format string, v ...any) {}
func (l natsLogger) Tracef(format string, v ...any) {}

func (l natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.CompareAndSwap(nil, msg)
	l.log.Error("nats: " + msg)
}

func (l natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "Plaintext passwords detected") {
		// The secret is the password; it never leaves the process but
		// to authenticate to the other nodes.
		l.log.Debug("nats: " + msg)
		return
	}
	l.log.Info("nats: " + msg)
}

func (l natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "Error trying to connect to route") {
		l.log.Debug("nats: " + msg)
		return
	}
	l.log.Warn("nats: " + msg)
}
