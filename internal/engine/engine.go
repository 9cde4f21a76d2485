// Package engine runs RTMFP over UDP: it demultiplexes datagrams to the
// handshake (session ID 0) and to open sessions, runs both handshake
// roles, owns the timers and hands out blocking, goroutine-safe handles
// for sessions and flows. The protocol logic itself lives in the pure
// packages wire, handshake and session; this is the edge where sockets,
// goroutines and locks live.
//
// An engine serves one address with one or more shards (Config.Shards):
// each shard has its own socket (SO_REUSEPORT on Linux), its own lock,
// session table and timers, and one goroutine that reads, runs the
// protocol, writes and runs the application's event callbacks. Sessions
// live in one shard for their whole life (their ID says which), so shards
// share nothing on the per-packet path and an engine uses as many cores
// as it has shards.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Errors.
var (
	ErrClosed         = errors.New("engine: closed")
	ErrOpenTimeout    = errors.New("engine: session open timed out")
	ErrNotIntroducer  = errors.New("engine: session is not an introducer")
	ErrTooManyPending = errors.New("engine: too many sessions opening")
	// ErrPeerGone: the introducer says the peer has no session any more.
	ErrPeerGone = errors.New("engine: the server says the peer is gone")
)

// Config configures an engine. Identity is required.
type Config struct {
	Identity *handshake.Identity
	Policy   handshake.Policy

	// Shards is how many sockets and goroutines serve the engine's
	// address (default 1). On Linux, given a *net.UDPConn, the engine opens
	// the others on the same address with SO_REUSEPORT and steers each
	// session's packets to its shard; elsewhere, or for other
	// net.PacketConns, there is one shard. A server uses one per core.
	Shards int

	// Session tuning (see session.Config).
	Keepalive         time.Duration
	DeadAfter         time.Duration
	IdleTimeout       time.Duration
	RecvBuffer        int
	SessionRecvBuffer int
	// OpenTimeout bounds how long Connect keeps retransmitting (default
	// 95 s, as RFC 7016 implementations do); a context deadline can cut it
	// shorter.
	OpenTimeout time.Duration

	// SelectAncillary, if set, filters IHellos that select us through
	// ancillary data (a URI EPD); returning false ignores the IHello.
	SelectAncillary func(src netip.AddrPort, uri []byte) bool
	// UnmatchedIHello receives IHellos whose EPD names another endpoint (a
	// server introduces peers here). It runs without the engine's locks,
	// on the receiving shard's goroutine, so it may call Redirect and
	// ForwardIHello. epd and tag are valid only during the call.
	UnmatchedIHello func(src netip.AddrPort, epd handshake.EPD, tag []byte)
	// AllowKeying rate-limits the expensive part of the handshake per
	// source; returning false drops the IIKeying. It runs after the cookie
	// proved the source address, so per-source state is safe there.
	AllowKeying func(src netip.AddrPort) bool
	// AllowHello, if set, is asked before answering an IHello from src
	// with an RHello. Before the cookie round trip the source address is
	// unproven, so it must keep no per-source state (fixed-memory budgets
	// only). Every well-formed IHello is answered otherwise, whatever its
	// size: librtmfp's IHello for app "live" is a 36-byte datagram.
	AllowHello func(src netip.AddrPort) bool
	// HelloRedirect, if set, may send an initiator elsewhere (it runs
	// with the shard's lock held, so it must be quick): when it
	// returns addresses for an IHello that selects us (and AllowHello let
	// it through), the initiator gets a Redirect to them instead of an
	// RHello (a cluster node sends new clients to a less loaded node).
	HelloRedirect func(src netip.AddrPort) []wire.Address
	// ArrivalOrder decides per new incoming flow whether messages are
	// delivered as they complete rather than in order.
	ArrivalOrder func(metadata []byte) bool

	// Events, if set, switches the engine to event-driven mode: sessions
	// that others open, their flows and messages are delivered as callbacks
	// instead of through Accept, AcceptFlow and Read. A server with many
	// idle sessions needs this: blocking handles cost goroutines (and their
	// stacks) per session.
	Events Events
	// MaxEventBytes bounds, in event mode, the received messages waiting
	// for the callbacks of one shard (their bytes plus a small per-message
	// charge). Past it the engine leaves messages in their sessions, whose
	// receive windows then hold the senders back, until the callbacks have
	// worked the queue down to half. Default 4 MiB.
	MaxEventBytes int

	// Logger; nil discards.
	Logger *slog.Logger
	// Rand; nil uses crypto/rand.
	Rand io.Reader
	// EphemeralKeys is how many group-2 ephemeral key pairs a responder
	// keeps ready (default 2; a negative value disables the pool).
	EphemeralKeys int
	// EphemeralReuse is how many handshakes one ephemeral key serves
	// (within EphemeralLifetime) before the next one takes over: the
	// Diffie-Hellman key generation is as costly as the exchange itself,
	// and session keys stay unique through the initiator's random SKIC.
	// Default 256 handshakes and 10 s; 1 uses a fresh key every time.
	EphemeralReuse    int
	EphemeralLifetime time.Duration
	// MaxOpening bounds concurrent outgoing session attempts (default 1024).
	MaxOpening int
}

// Events receives an event-driven engine's callbacks. The callbacks about
// one session come in order, on the goroutine of the session's shard (so
// callbacks about sessions of different shards may run at the same time).
// Callbacks may call any engine method but Run. A callback that blocks
// holds up the events of its shard behind it, not the protocol: after a
// short while another goroutine takes over the shard's packets.
type Events interface {
	// SessionOpened: a session another endpoint opened to us.
	SessionOpened(s *Session)
	// FlowOpened: the far end opened a flow (Reject it here to refuse it).
	FlowOpened(f *RecvFlow)
	// Message: a complete message on a flow, in order (or in arrival order
	// where ArrivalOrder asked for it). msg is the application's to keep.
	Message(f *RecvFlow, msg []byte)
	// FlowClosed: the far end finished the flow, or it was rejected.
	FlowClosed(f *RecvFlow)
	// SessionClosed: the session is gone, with the reason. It comes as
	// soon as the session leaves the open state (it may linger a while
	// longer to finish an orderly close), once per session.
	SessionClosed(s *Session, err error)
	// AddressChanged: the far end moved to a validated new address.
	AddressChanged(s *Session, addr netip.AddrPort)
}

// Counters are the engine's handshake and drop counters. All fields are
// read with atomic loads through Stats (which adds the per-shard packet
// counters).
type Counters struct {
	DropShort, DropUnknownSID, DropDecrypt, DropMode     atomic.Uint64
	DropCookie, DropCertificate, DropKeying, DropLimited atomic.Uint64
	DropOversize                                         atomic.Uint64
	HandshakesOK, HandshakesFailed, CookieChanges        atomic.Uint64
	RHellosSent, RedirectsSent, FIHellosSent             atomic.Uint64
	SessionsOpen                                         atomic.Int64
	EventPanics                                          atomic.Uint64
}

// Stats is a snapshot of the counters.
type Stats struct {
	PacketsIn, PacketsOut, BytesIn, BytesOut             uint64
	DropShort, DropUnknownSID, DropDecrypt, DropMode     uint64
	DropCookie, DropCertificate, DropKeying, DropLimited uint64
	DropOversize, DropSend                               uint64
	HandshakesOK, HandshakesFailed, CookieChanges        uint64
	RHellosSent, RedirectsSent, FIHellosSent             uint64
	SessionsOpen                                         int64
	EventPanics                                          uint64
	Shards                                               int
	Forwarded                                            uint64 // datagrams a shard handed to another
	// Wakeups counts the shards' reader iterations: each began with a
	// wake-up for a batch of datagrams, a timer or another goroutine's
	// writes. On a lightly loaded server a wake-up costs more than the
	// protocol work it does, so wake-ups per datagram is the figure to
	// watch.
	Wakeups uint64
}

// Engine is one RTMFP endpoint on one address.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	rnd     io.Reader // safe for concurrent use
	id      *handshake.Identity
	shards  []*shard
	steered bool // the kernel steers session packets to their shard

	responder *handshake.Responder
	initiator *handshake.Initiator

	// gmu guards what the shards share; it is taken after a shard's lock,
	// never before one.
	gmu       sync.Mutex
	byPeer    map[[32]byte]*Session // open sessions by far fingerprint
	peerCount map[[32]byte]int      // sessions per far fingerprint
	openTag   map[string]*opening
	openSID   map[uint32]*opening
	accepted  []*Session
	acceptCh  chan struct{}

	openings atomic.Int32  // len(openTag), read without gmu
	openRR   atomic.Uint32 // spreads openings over the shards

	closed   atomic.Bool
	refusing atomic.Bool // draining: no new sessions
	runMu    sync.Mutex  // one Run at a time

	ephMu sync.Mutex // guards pool use and eph
	pool  map[uint64]chan *handshake.KeyPair
	eph   map[uint64]*ephEntry

	done chan struct{}
	wg   sync.WaitGroup

	C Counters
}

// lockedReader makes a caller's random source safe for the shards to
// share.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(b)
}

// New starts an engine on conn. The engine owns conn (and the sockets it
// opens beside it) and closes it.
func New(conn net.PacketConn, cfg Config) (*Engine, error) {
	if cfg.Identity == nil {
		return nil, errors.New("engine: Config.Identity is required")
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 95 * time.Second
	}
	if cfg.MaxOpening <= 0 {
		cfg.MaxOpening = 1024
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = 4 << 20
	}
	if cfg.EphemeralKeys == 0 {
		cfg.EphemeralKeys = 2
	}
	if cfg.EphemeralReuse <= 0 {
		cfg.EphemeralReuse = 256
	}
	if cfg.EphemeralLifetime <= 0 {
		cfg.EphemeralLifetime = 10 * time.Second
	}
	var rnd io.Reader = rand.Reader
	if cfg.Rand != nil {
		rnd = &lockedReader{r: cfg.Rand}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cookies, err := handshake.NewCookies(rnd)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, log: log, rnd: rnd, id: cfg.Identity,
		byPeer: map[[32]byte]*Session{}, peerCount: map[[32]byte]int{},
		openTag: map[string]*opening{}, openSID: map[uint32]*opening{},
		acceptCh: make(chan struct{}), done: make(chan struct{}),
		pool: map[uint64]chan *handshake.KeyPair{}, eph: map[uint64]*ephEntry{},
	}
	e.responder = &handshake.Responder{ID: cfg.Identity, Policy: cfg.Policy, Rand: rnd, Ephemeral: e.ephemeral}
	e.initiator = &handshake.Initiator{ID: cfg.Identity, Policy: cfg.Policy, Rand: rnd}

	warn := func(err error, n int) { log.Warn("UDP read error", "err", err, "in_a_row", n) }
	var socks []socket
	if udp, ok := conn.(*net.UDPConn); ok {
		conns, steered, err := openShardConns(udp, cfg.Shards)
		if err != nil {
			log.Warn("one socket only: opening the others on the same address failed", "shards", cfg.Shards, "err", err)
		}
		e.steered = steered
		for _, c := range conns {
			socks = append(socks, newUDPSocket(c, warn))
		}
	} else {
		socks = append(socks, newConnSocket(conn, warn))
	}
	for i, sock := range socks {
		e.shards = append(e.shards, newShard(e, i, len(socks), sock, cookies.Clone()))
	}
	if len(socks) > 1 && !e.steered {
		log.Debug("session packets are not steered by the kernel; shards forward them", "shards", len(socks))
	}

	if cfg.Identity.Static == nil && cfg.EphemeralKeys > 0 {
		// Pre-generate ephemeral keys off the handshake's hot path.
		for _, g := range []*handshake.Group{handshake.Group2, handshake.Group14} {
			ch := make(chan *handshake.KeyPair, cfg.EphemeralKeys)
			e.pool[g.ID] = ch
			e.wg.Add(1)
			go e.fillPool(g, ch)
		}
	}
	for _, sh := range e.shards {
		e.wg.Add(1)
		go sh.loop(0)
	}
	return e, nil
}

func (e *Engine) fillPool(g *handshake.Group, ch chan *handshake.KeyPair) {
	defer e.wg.Done()
	for {
		kp, err := handshake.GenerateKey(g, e.rnd)
		if err != nil {
			return
		}
		select {
		case ch <- kp:
		case <-e.done:
			return
		}
	}
}

type ephEntry struct {
	kp   *handshake.KeyPair
	uses int
	born time.Time
}

// ephemeral returns the responder's current ephemeral key for a group,
// moving to a pre-generated one when it has served its handshakes.
func (e *Engine) ephemeral(g *handshake.Group) (*handshake.KeyPair, error) {
	e.ephMu.Lock()
	defer e.ephMu.Unlock()
	now := time.Now()
	if c := e.eph[g.ID]; c != nil && c.uses < e.cfg.EphemeralReuse && now.Sub(c.born) < e.cfg.EphemeralLifetime {
		c.uses++
		return c.kp, nil
	}
	var kp *handshake.KeyPair
	if ch := e.pool[g.ID]; ch != nil {
		select {
		case kp = <-ch:
		default:
		}
	}
	if kp == nil {
		var err error
		if kp, err = handshake.GenerateKey(g, e.rnd); err != nil {
			return nil, err
		}
	}
	if c := e.eph[g.ID]; c != nil {
		c.kp, c.uses, c.born = kp, 1, now
	} else {
		e.eph[g.ID] = &ephEntry{kp: kp, uses: 1, born: now}
	}
	return kp, nil
}

// LocalAddr is the socket's address.
func (e *Engine) LocalAddr() net.Addr { return e.shards[0].sock.localAddr() }

// Identity is the engine's identity.
func (e *Engine) Identity() *handshake.Identity { return e.id }

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.C
	st := Stats{
		DropShort: c.DropShort.Load(), DropUnknownSID: c.DropUnknownSID.Load(), DropDecrypt: c.DropDecrypt.Load(), DropMode: c.DropMode.Load(),
		DropCookie: c.DropCookie.Load(), DropCertificate: c.DropCertificate.Load(), DropKeying: c.DropKeying.Load(), DropLimited: c.DropLimited.Load(),
		DropOversize: c.DropOversize.Load(),
		HandshakesOK: c.HandshakesOK.Load(), HandshakesFailed: c.HandshakesFailed.Load(), CookieChanges: c.CookieChanges.Load(),
		RHellosSent: c.RHellosSent.Load(), RedirectsSent: c.RedirectsSent.Load(), FIHellosSent: c.FIHellosSent.Load(),
		SessionsOpen: c.SessionsOpen.Load(), EventPanics: c.EventPanics.Load(),
		Shards: len(e.shards),
	}
	for _, sh := range e.shards {
		st.PacketsIn += sh.packetsIn.Load()
		st.PacketsOut += sh.packetsOut.Load()
		st.BytesIn += sh.bytesIn.Load()
		st.BytesOut += sh.bytesOut.Load()
		st.DropSend += sh.dropSend.Load()
		st.Forwarded += sh.forwarded.Load()
		st.Wakeups += sh.wakeups.Load()
	}
	return st
}

// Refuse stops answering handshakes (a draining server): existing
// sessions carry on, new ones are not opened.
func (e *Engine) Refuse() { e.refusing.Store(true) }

// Close aborts every session, closes the sockets and waits for the
// engine's goroutines (the callbacks already queued run first).
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	now := time.Now()
	for _, sh := range e.shards {
		sh.mu.Lock()
		for _, s := range sh.sessions {
			s.core.Abort(now, sh.sendTo)
		}
		sh.flushOut()
		for _, o := range slices.Clone(sh.openings) { // fail removes them
			o.fail(ErrClosed)
		}
		sh.mu.Unlock()
	}
	close(e.done)
	var err error
	for _, sh := range e.shards {
		if cerr := sh.sock.close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	e.wg.Wait()
	return err
}

// drop counts a dropped datagram and, at debug level, logs its source and
// why: "a client gets no answer" starts with these lines.
func (e *Engine) drop(counter *atomic.Uint64, reason string, src netip.AddrPort) {
	counter.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("dropped", "src", src.String(), "reason", reason)
	}
}

// dropErr is drop with the error that caused it.
func (e *Engine) dropErr(counter *atomic.Uint64, reason string, src netip.AddrPort, err error) {
	counter.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("dropped", "src", src.String(), "reason", reason, "err", err)
	}
}

// shardFor is the shard that owns a session ID (near session IDs are
// chosen so that ID mod shards is their shard's index).
func (e *Engine) shardFor(sid uint32) *shard { return e.shards[sid%uint32(len(e.shards))] }

// Inject processes one datagram as if it had arrived on the socket from
// src, synchronously (fuzzing and tests drive the receive path with it).
// Event callbacks it causes run on the shard's goroutine as usual.
func (e *Engine) Inject(src netip.AddrPort, d []byte) {
	sid, _ := wire.SessionID(d)
	sh := e.shardFor(sid)
	sh.injectMu.Lock()
	defer sh.injectMu.Unlock()
	in := sh.injectBatch()
	in.n[0] = copy(in.buf[0], d)
	in.src[0] = src
	sh.process(in, 1, false)
}

// Redirect sends a Responder Redirect to an initiator: the addresses at
// which the endpoint it asked for can be reached.
func (e *Engine) Redirect(to netip.AddrPort, tag []byte, addrs []wire.Address) {
	if e.closed.Load() {
		return
	}
	sh := e.shardForAddr(to)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.pkt = wire.Redirect{Tag: tag, Addresses: addrs}.Append(sh.startupPacket(time.Now()))
	sh.sealStartup(0, to)
	sh.flushOut()
	e.C.RedirectsSent.Add(1)
}

// shardForAddr picks the shard that writes to an address outside any
// session (all of them share the engine's address): spread by address.
func (e *Engine) shardForAddr(a netip.AddrPort) *shard {
	if len(e.shards) == 1 {
		return e.shards[0]
	}
	b := a.Addr().As16()
	h := uint32(a.Port())
	for _, x := range b {
		h = h*31 + uint32(x)
	}
	return e.shards[h%uint32(len(e.shards))]
}

// Accept waits for the next session another endpoint opened to us.
func (e *Engine) Accept(ctx context.Context) (*Session, error) {
	for {
		e.gmu.Lock()
		if len(e.accepted) > 0 {
			s := e.accepted[0]
			e.accepted = e.accepted[1:]
			e.gmu.Unlock()
			return s, nil
		}
		if e.closed.Load() {
			e.gmu.Unlock()
			return nil, ErrClosed
		}
		ch := e.acceptCh
		e.gmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.done:
			return nil, ErrClosed
		}
	}
}

// accept hands a new session to Accept; e.gmu not held.
func (e *Engine) accept(s *Session) {
	e.gmu.Lock()
	e.accepted = append(e.accepted, s)
	close(e.acceptCh)
	e.acceptCh = make(chan struct{})
	e.gmu.Unlock()
}

// Sessions returns the open sessions.
func (e *Engine) Sessions() []*Session {
	var out []*Session
	for _, sh := range e.shards {
		sh.mu.Lock()
		for _, s := range sh.sessions {
			out = append(out, s)
		}
		sh.mu.Unlock()
	}
	return out
}

// SessionByPeer returns an open session whose far end has the peer ID.
func (e *Engine) SessionByPeer(id [32]byte) *Session {
	e.gmu.Lock()
	defer e.gmu.Unlock()
	return e.byPeer[id]
}

// ErrRandom is returned when the random source fails (or keeps repeating
// itself) while picking a session ID.
var ErrRandom = errors.New("engine: random source failed")

// randomSID draws session IDs from the engine's random source until taken
// reports a free one. With 32-bit IDs and far fewer sessions a few draws
// always suffice; a source that fails, or that gives taken IDs 64 times in
// a row, is broken, and the handshake is dropped rather than the engine
// spinning under a lock. own maps a draw to the shard's ID space.
func randomSID(rnd io.Reader, own func(uint32) uint32, taken func(uint32) bool) (uint32, error) {
	var b [4]byte
	for range 64 {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrRandom, err)
		}
		sid := own(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
		if sid != 0 && !taken(sid) {
			return sid, nil
		}
	}
	return 0, ErrRandom
}
