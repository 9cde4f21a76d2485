package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/stratus-rtmfp/stratus/internal/clusterhook"
	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/exchange"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/ratelimit"
	"github.com/stratus-rtmfp/stratus/store"
)

// Errors.
var (
	ErrServerClosed = errors.New("server: closed")
	ErrNoStore      = errors.New("server: Config.Store is required")
)

// Server is a running rendezvous service. Its methods are safe for
// concurrent use.
type Server struct {
	cfg      Config
	id       *handshake.Identity
	log      *slog.Logger
	metrics  *metrics
	keys     *keyCache
	exchange *exchange.Registry
	// dir is where connected peers live: this process's clients (and, in
	// a cluster, the other nodes'). It has its own lock; never call it
	// with s.mu held.
	dir directory.Directory
	// store is Config.Store, or in a cluster the cluster's key store
	// (which keeps its copy and this node's usage in Config.Store).
	store      store.Store
	node       clusterhook.Node // nil unless clustered
	redirectTo atomic.Pointer[redirect]
	// groups holds NetGroup membership, beside the peer registry rather
	// than under s.mu: joins lock only their own group. It has its own
	// locks; never call it with s.mu held.
	groups membership.Directory
	// groupMembers counts this server's GC flows that are in a group, for
	// Config.MaxGroupMembers.
	groupMembers atomic.Int64

	mu       sync.Mutex
	engines  []*engine.Engine
	byAddr   map[netip.AddrPort]*client
	perIP    map[netip.Prefix]int
	perKey   map[string]int
	live     map[peerKey]int // connected sessions per (peer ID, developer key): the exchange's liveness
	sessions int
	draining bool
	closed   bool
	limiters map[netip.Prefix]*limiterEntry
	refusing int // sessions let in over a limit only to be told so
	hello    *rate.Limiter
	lookups  *rate.Limiter
	prefix   *ratelimit.Prefix // RHellos and anonymous lookups per source prefix

	done     chan struct{}
	stopOnce sync.Once
	bg       sync.WaitGroup
}

// New creates a server; call Serve for each UDP socket.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, ErrNoStore
	}
	cfg.defaults()
	id, err := handshake.NewServerIdentity(nil)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, id: id, log: cfg.Logger,
		byAddr: map[netip.AddrPort]*client{},
		perIP:  map[netip.Prefix]int{}, perKey: map[string]int{}, live: map[peerKey]int{}, limiters: map[netip.Prefix]*limiterEntry{},
		hello: limiter(cfg.HelloRate), lookups: limiter(cfg.LookupRate),
		prefix: ratelimit.NewPrefix(cfg.HelloRatePerPrefix, int(2*cfg.HelloRatePerPrefix), prefixBuckets),
		done:   make(chan struct{}),
	}
	switch {
	case cfg.groupDirectory != nil:
		s.groups = cfg.groupDirectory((*groupHandler)(s))
	case cfg.Cluster == nil: // a cluster's node has its own (startCluster)
		s.groups = membership.NewLocal(membership.DefaultPolicy, (*groupHandler)(s))
	}
	s.store, s.dir = cfg.Store, directory.NewLocal((*deliver)(s))
	s.exchange = newExchange(s)
	s.metrics = newMetrics(s, cfg.Registerer, cfg.Gatherer)
	if cfg.Cluster != nil {
		if err := s.startCluster(); err != nil {
			return nil, err
		}
	}
	s.keys = newKeyCache(s.store, cfg.Open)
	if s.node != nil {
		s.node.Begin()
	}
	s.bg.Add(1)
	go s.housekeeping()
	return s, nil
}

// prefixBuckets is the size of each row of the per-prefix budget: 65,536
// buckets of 8 bytes, two rows, 1 MiB. A flood from k prefixes shares both
// buckets of an unrelated prefix with a probability of about (2k/65536)².
const prefixBuckets = 1 << 16

// limiter is a global token bucket of r per second (bursts of r/10).
func limiter(r float64) *rate.Limiter {
	if r < 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(r), int(r)/10+1)
}

// engineList copies the engines, to be used without s.mu.
func (s *Server) engineList() []*engine.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*engine.Engine(nil), s.engines...)
}

// Fingerprint is the server's peer ID (what Flash shows as farID).
func (s *Server) Fingerprint() [32]byte { return s.id.PeerID }

// Serve runs the service on one socket until Shutdown or Close. The server
// owns conn and closes it. It returns ErrServerClosed after Shutdown or
// Close, or the error that kept it from starting.
func (s *Server) Serve(conn net.PacketConn) error {
	if err := s.Listen(conn); err != nil {
		return err
	}
	<-s.done
	return ErrServerClosed
}

// Listen starts the service on one socket and returns once it answers
// there (or with the error that kept it from starting); the socket is
// served until Shutdown or Close. The server owns conn and closes it.
func (s *Server) Listen(conn net.PacketConn) error {
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		conn.Close()
		return ErrServerClosed
	}
	// The engine may hand over an IHello before New returns (a client
	// retransmitting to this port, or another shard's goroutine already
	// serving): until the engine is stored, a lookup is dropped and the
	// client's retransmission is served.
	var started atomic.Pointer[engine.Engine]
	e, err := engine.New(conn, engine.Config{
		Identity: s.id,
		// One socket and goroutine per core (SO_REUSEPORT on Linux).
		Shards:    runtime.GOMAXPROCS(0),
		Policy:    handshake.Requiring(s.cfg.RequireHMAC, s.cfg.RequireSequenceNumbers),
		Keepalive: 2 * s.cfg.ClientKeepalive,
		// Clients send the server small control messages only: a small
		// receive buffer per flow and per session bounds what a hostile
		// client can make the server hold.
		RecvBuffer:        64 << 10,
		SessionRecvBuffer: 256 << 10,
		DeadAfter:         s.cfg.ReapAfter,
		// Sessions without any flow (never connected) go after this.
		IdleTimeout: s.cfg.ConnectTimeout,
		Events:      (*events)(s),
		UnmatchedIHello: func(src netip.AddrPort, epd handshake.EPD, tag []byte) {
			if e := started.Load(); e != nil {
				s.introduce(e, src, epd, tag)
			}
		},
		AllowKeying:   s.allowKeying,
		AllowHello:    s.allowHello,
		HelloRedirect: s.helloRedirect,
		Logger:        s.cfg.Logger,
	})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	started.Store(e)
	s.engines = append(s.engines, e)
	s.mu.Unlock()
	s.log.Info("listening", "udp", conn.LocalAddr().String())
	return nil
}

// Addrs lists the addresses of the sockets being served.
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, e := range s.engineList() {
		out = append(out, e.LocalAddr())
	}
	return out
}

// Shutdown drains the server: it stops accepting sessions, tells every
// connected client that the application is shutting down, closes their
// sessions in an orderly way, and returns when they are closed or ctx
// ends (then the rest are aborted).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	engines := append([]*engine.Engine(nil), s.engines...)
	s.mu.Unlock() // never hold s.mu while calling into an engine (lock order)
	var clients []*client
	for _, e := range engines {
		e.Refuse()
	}
	for _, e := range engines {
		var mine []*client
		for _, sess := range e.Sessions() {
			if c, ok := sess.Value().(*client); ok {
				mine = append(mine, c)
			}
		}
		// Client state belongs to the engine's event dispatcher.
		e.Run(func() {
			for _, c := range mine {
				c.shutdown()
			}
		})
		clients = append(clients, mine...)
	}
	var err error
	for _, c := range clients {
		select {
		case <-c.sess.Done():
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	s.Close()
	return err
}

// Close stops the server at once: every session is aborted.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	engines := s.engines
	s.mu.Unlock()
	for _, e := range engines {
		e.Close()
	}
	s.stopOnce.Do(func() { close(s.done) })
	s.bg.Wait()
	err := s.flushUsage()
	if s.node != nil {
		s.node.Close() // pushes the usage just flushed, tells the others
	}
	return err
}

// housekeeping flushes usage counters and forgets idle rate limiters.
func (s *Server) housekeeping() {
	defer s.bg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.flushUsage()
			s.mu.Lock()
			for ip, l := range s.limiters {
				if now.Sub(l.last) > time.Minute {
					delete(s.limiters, ip)
				}
			}
			s.mu.Unlock()
		}
	}
}

type limiterEntry struct {
	l    *rate.Limiter
	last time.Time
}

// ipKey is what per-IP limits count by: the IPv4 address, or the IPv6 /64
// (one subscriber's allocation, which one host can spread over).
func ipKey(ap netip.AddrPort) netip.Prefix {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// decIP forgets one session of an address; s.mu held.
func (s *Server) decIP(ap netip.AddrPort) {
	k := ipKey(ap)
	if s.perIP[k]--; s.perIP[k] <= 0 {
		delete(s.perIP, k)
	}
}

// allowHello decides whether an IHello gets an RHello: first the budget
// of its source prefix (so that one flooding network cannot use up the
// global budget), then the global rate.
func (s *Server) allowHello(src netip.AddrPort) bool {
	if !s.prefix.Allow(src.Addr(), time.Now()) {
		s.metrics.drops.WithLabelValues("hello_prefix_rate").Inc()
		return false
	}
	if !s.hello.Allow() {
		s.metrics.drops.WithLabelValues("hello_rate").Inc()
		return false
	}
	return true
}

// maxRefusing bounds the sessions let in over --max-sessions or
// --max-sessions-per-ip only to refuse their connect with the reason: past
// it, such handshakes are dropped (and counted) as before.
const maxRefusing = 1024

// overLimit says why a new session from src is over a limit, or "" if it
// is not; s.mu held.
func (s *Server) overLimit(src netip.AddrPort) (code, why, reason string) {
	switch {
	case s.draining:
		return flash.ConnectAppShutdown, "server shutting down", "draining"
	case s.cfg.MaxSessions > 0 && s.sessions >= s.cfg.MaxSessions:
		return flash.ConnectRejected, fmt.Sprintf("server full: %d sessions (--max-sessions)", s.cfg.MaxSessions), "session_limit"
	case s.cfg.MaxSessionsPerIP > 0 && s.perIP[ipKey(src)] >= s.cfg.MaxSessionsPerIP:
		return flash.ConnectRejected, fmt.Sprintf("too many sessions from %s: %d (--max-sessions-per-ip)", ipKey(src), s.cfg.MaxSessionsPerIP), "ip_session_limit"
	}
	return "", "", ""
}

// allowKeying limits keying handshakes per source IP. It runs after the
// cookie proved the address, so the per-IP entry is not spoofable.
func (s *Server) allowKeying(src netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Over a session limit, the handshake goes ahead so that the client
	// can be told why at connect (SessionOpened), as long as few such
	// sessions are open: the rate limit below still applies.
	if _, _, reason := s.overLimit(src); reason != "" && s.refusing >= maxRefusing {
		s.dropped(reason, src)
		return false
	}
	ip := ipKey(src)
	if s.cfg.HandshakeRate < 0 {
		return true
	}
	l := s.limiters[ip]
	if l == nil {
		l = &limiterEntry{l: rate.NewLimiter(rate.Limit(s.cfg.HandshakeRate), s.cfg.HandshakeBurst)}
		s.limiters[ip] = l
	}
	l.last = time.Now()
	if !l.l.Allow() {
		s.dropped("handshake_rate", src)
		return false
	}
	return true
}

// dropped counts a handshake or session the server's limits dropped, and
// logs it at debug level with its source.
func (s *Server) dropped(reason string, src netip.AddrPort) {
	s.metrics.drops.WithLabelValues(reason).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("dropped", "src", src.String(), "reason", reason)
	}
}
