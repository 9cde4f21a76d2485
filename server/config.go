// Package server is Stratus, the RTMFP rendezvous service, as a library:
// what Adobe Stratus/Cirrus did for Flash Player and AIR. It checks
// developer keys on connect, records each client's peer ID and addresses,
// introduces peers to each other so that they talk directly, relays
// relay/onRelay calls, and reports what it does through metrics and an
// admin HTTP API. Media never passes through it.
//
//	srv, _ := server.New(server.Config{Store: store.NewMemory(), Open: true})
//	err := srv.Listen(conn)     // once per UDP socket; returns once it answers
//	...
//	srv.Shutdown(ctx)
//
// Store (package store) holds developer keys and usage: store.OpenBolt
// for the bbolt database the stratus command uses, store.NewMemory, or
// any implementation of store.Store. Package servertest runs a server in
// a test.
package server

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/store"
)

// Config configures a Server. The zero value of every field but Store
// means its documented default.
type Config struct {
	// Store holds developer keys and usage (store.OpenBolt, or
	// store.NewMemory for tests and keyless embedding).
	Store store.Store
	// Open accepts any developer key (the key is still recorded).
	Open bool

	// ClientKeepalive is the keepalive period the server commands clients
	// to use towards it (set-keepalive 0x29), default 15 s; PeerKeepalive
	// the period for their peer sessions, default 10 s. Both are at least
	// 5 s (RFC 7425).
	ClientKeepalive time.Duration
	PeerKeepalive   time.Duration
	// ReapAfter drops a client that has sent nothing for this long and
	// does not answer pings (default 4 × ClientKeepalive).
	ReapAfter time.Duration
	// ConnectTimeout closes a session that has not sent connect by then
	// (default 30 s).
	ConnectTimeout time.Duration

	// RefuseAnonymousLookups: when false (the default), a peer-ID lookup
	// from an address with no session is served, since a peer ID is
	// already a 256-bit secret; when true only connected clients of the
	// same developer key are introduced.
	RefuseAnonymousLookups bool

	// Limits; 0 means the default, a negative value means none.
	MaxSessions       int     // default 200000
	MaxSessionsPerIP  int     // default 256
	MaxSessionsPerKey int     // default none
	HandshakeRate     float64 // keying handshakes per second per source IP, default 50
	HandshakeBurst    int     // default 100
	HelloRate         float64 // RHellos per second in all, default 50000 (negative: no limit)
	// HelloRatePerPrefix bounds RHellos, and Redirects to lookups from
	// addresses without a session, per source prefix (IPv4 /24, IPv6
	// /48) per second, with bursts of twice as many; default 200. Source
	// addresses are unproven there, so this bounds what a spoofer can
	// reflect at one network, in fixed memory (1 MiB of hashed buckets).
	HelloRatePerPrefix float64
	// LookupRate bounds introductions (peer-ID lookups answered) per
	// second in all, default 50000 (negative: no limit).
	LookupRate       float64
	MaxPeerAddresses int // setPeerInfo addresses kept per client, default 8
	// NetGroup server channel: groups (GC flows) per session, default 8
	// (librtmfp holds one group per NetConnection, Flash applications a
	// few); memberships (GC flows in a group) in all, default 500000;
	// GC flow opens and GC messages per second per session, all its
	// flows together (bursts of twice that, and at least two per group
	// it may hold, to open and join them all at once), default 5.
	MaxGroupsPerSession int
	MaxGroupMembers     int
	GroupMessageRate    float64

	// The peer-ID exchange (Server.Exchange and the stratus.exchange.*
	// calls) holds at most this many names per developer key (default
	// 10000) and per peer (default 8) registered by peers themselves on
	// their NetConnection, and as many again registered over HTTP (which
	// proves nothing about who asks, so it must not use up the room of
	// peers' own registrations).
	ExchangeMaxNamesPerKey  int
	ExchangeMaxNamesPerPeer int

	// PublicAddresses are the addresses clients reach this server at, when
	// it sits behind a NAT or load balancer; they are shown in URLs and the
	// admin API.
	PublicAddresses []netip.AddrPort

	// RequireHMAC and RequireSequenceNumbers insist on the optional RFC
	// 7425 packet HMAC and session sequence numbers in both directions
	// (what rtmfp-cpp's programs do by default). When false (the default)
	// each is sent only to clients that ask for it, as Flash and Adobe's
	// servers do.
	RequireHMAC            bool
	RequireSequenceNumbers bool

	// Cluster, if set, joins this server to a cluster of Stratus nodes
	// over NATS (see ClusterConfig); nil runs a single server, and nothing
	// listens but the UDP sockets given to Listen.
	Cluster *ClusterConfig

	Logger *slog.Logger
	// OnSession, if set, is told about every session as it opens,
	// connects and closes (tests wait on it instead of polling; embedders
	// can log or bill with it). It runs on the server's event goroutine:
	// it must return quickly and must not call back into the Server.
	OnSession func(SessionEvent)
	// Registerer receives the metrics; nil uses a private registry (see
	// Server.Gatherer).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// groupDirectory, if set, makes the directory NetGroup membership
	// lives in, handing it what delivers announcements to this server's
	// members (tests). In cluster mode the node's directory is the
	// cluster's (startCluster), and it hands them to the same
	// groupHandler. Unexported: the directory's types are internal.
	groupDirectory func(membership.Handler) membership.Directory
}

func (c *Config) defaults() {
	if c.ClientKeepalive <= 0 {
		c.ClientKeepalive = 15 * time.Second
	}
	if c.PeerKeepalive <= 0 {
		c.PeerKeepalive = 10 * time.Second
	}
	c.ClientKeepalive = max(c.ClientKeepalive, 5*time.Second)
	c.PeerKeepalive = max(c.PeerKeepalive, 5*time.Second)
	if c.ReapAfter <= 0 {
		c.ReapAfter = 4 * c.ClientKeepalive
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxSessions, 200000)
	def(&c.MaxSessionsPerIP, 256)
	def(&c.MaxSessionsPerKey, -1)
	def(&c.HandshakeBurst, 100)
	def(&c.MaxPeerAddresses, 8)
	def(&c.MaxGroupsPerSession, 8)
	def(&c.MaxGroupMembers, 500000)
	if c.GroupMessageRate == 0 {
		c.GroupMessageRate = 5
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = 50
	}
	if c.HelloRate == 0 {
		c.HelloRate = 50000
	}
	if c.HelloRatePerPrefix == 0 {
		c.HelloRatePerPrefix = 200
	}
	if c.LookupRate == 0 {
		c.LookupRate = 50000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// SessionEvent is what Config.OnSession is told.
type SessionEvent struct {
	Kind    SessionEventKind
	PeerID  string         // 64 hex digits
	Address netip.AddrPort // the address the session came from
	Key     string         // developer key (Connected and Closed after a connect)
	Group   string         // GroupJoined, GroupLeft: the group ID, 64 hex digits
}

// SessionEventKind says what happened to a session.
type SessionEventKind uint8

// Session event kinds.
const (
	SessionOpened      SessionEventKind = iota + 1 // handshake done, waiting for connect
	SessionConnected                               // connect accepted
	SessionPeerInfo                                // setPeerInfo stored (Server.Sessions lists the addresses)
	SessionClosed                                  // gone (after SessionOpened, whatever happened in between)
	SessionGroupJoined                             // joined a NetGroup (Server.Groups lists it)
	SessionGroupLeft                               // left a NetGroup (its GC flow closed, or the session ended)
)

func (k SessionEventKind) String() string {
	switch k {
	case SessionOpened:
		return "opened"
	case SessionConnected:
		return "connected"
	case SessionPeerInfo:
		return "peer-info"
	case SessionClosed:
		return "closed"
	case SessionGroupJoined:
		return "group-joined"
	case SessionGroupLeft:
		return "group-left"
	}
	return "unknown"
}
