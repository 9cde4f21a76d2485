// Package engine runs RTMFP over one net.PacketConn: it demultiplexes
// datagrams to the handshake (session ID 0) and to open sessions, runs both
// handshake roles, owns the timers and hands out blocking, goroutine-safe
// handles for sessions and flows. The protocol logic itself lives in the
// pure packages wire, handshake and session; this is the edge where
// sockets, goroutines and locks live.
package engine

import (
	"container/heap"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/session"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Errors.
var (
	ErrClosed         = errors.New("engine: closed")
	ErrOpenTimeout    = errors.New("engine: session open timed out")
	ErrNotIntroducer  = errors.New("engine: session is not an introducer")
	ErrTooManyPending = errors.New("engine: too many sessions opening")
)

// Config configures an engine. Identity is required.
type Config struct {
	Identity *handshake.Identity
	Policy   handshake.Policy

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
	// server introduces peers here). It runs without the engine lock, on
	// the receive goroutine, so it may call Redirect and ForwardIHello.
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
	// with the engine lock held, so it must be quick): when it
	// returns addresses for an IHello that selects us (and AllowHello let
	// it through), the initiator gets a Redirect to them instead of an
	// RHello (a cluster node sends new clients to a less loaded node).
	HelloRedirect func(src netip.AddrPort) []wire.Address
	// ArrivalOrder decides per new incoming flow whether messages are
	// delivered as they complete rather than in order.
	ArrivalOrder func(metadata []byte) bool
	// AcceptIntroducer marks sessions we open as trusted to send Forwarded
	// IHellos (a client trusts its server).
	// Sessions opened with ConnectOptions.Introducer override it.

	// Events, if set, switches the engine to event-driven mode: sessions
	// that others open, their flows and messages are delivered as callbacks
	// on one dispatcher goroutine instead of through Accept, AcceptFlow and
	// Read. A server with many idle sessions needs this: blocking handles
	// cost goroutines (and their stacks) per session.
	Events Events
	// MaxEventBytes bounds, in event mode, the received messages waiting
	// for the dispatcher (their bytes plus a small per-message charge).
	// Past it the engine leaves messages in their sessions, whose receive
	// windows then hold the senders back, until the dispatcher has worked
	// the queue down to half. Default 4 MiB.
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

// Events receives an event-driven engine's callbacks, in order, on one
// goroutine. Callbacks may call any engine method.
type Events interface {
	// SessionOpened: a session another endpoint opened to us.
	SessionOpened(s *Session)
	// FlowOpened: the far end opened a flow (Reject it here to refuse it).
	FlowOpened(f *RecvFlow)
	// Message: a complete message on a flow, in order (or in arrival order
	// where ArrivalOrder asked for it).
	Message(f *RecvFlow, msg []byte)
	// FlowClosed: the far end finished the flow, or it was rejected.
	FlowClosed(f *RecvFlow)
	// SessionClosed: the session is gone, with the reason.
	// SessionClosed: the session is gone, with the reason. It comes as
	// soon as the session leaves the open state (it may linger a while
	// longer to finish an orderly close), once per session.
	SessionClosed(s *Session, err error)
	// AddressChanged: the far end moved to a validated new address.
	AddressChanged(s *Session, addr netip.AddrPort)
}

// Counters are the engine's packet and handshake counters. All fields are
// read with atomic loads through Stats.
type Counters struct {
	PacketsIn, PacketsOut, BytesIn, BytesOut             atomic.Uint64
	DropShort, DropUnknownSID, DropDecrypt, DropMode     atomic.Uint64
	DropCookie, DropCertificate, DropKeying, DropLimited atomic.Uint64
	DropOversize                                         atomic.Uint64
	HandshakesOK, HandshakesFailed, CookieChanges        atomic.Uint64
	RHellosSent, RedirectsSent, FIHellosSent             atomic.Uint64
	SessionsOpen                                         atomic.Int64
	EventPanics                                          atomic.Uint64
}

// Stats is a snapshot of Counters.
type Stats struct {
	PacketsIn, PacketsOut, BytesIn, BytesOut             uint64
	DropShort, DropUnknownSID, DropDecrypt, DropMode     uint64
	DropCookie, DropCertificate, DropKeying, DropLimited uint64
	DropOversize                                         uint64
	HandshakesOK, HandshakesFailed, CookieChanges        uint64
	RHellosSent, RedirectsSent, FIHellosSent             uint64
	SessionsOpen                                         int64
	EventPanics                                          uint64
}

// Engine is one RTMFP endpoint on one socket.
type Engine struct {
	cfg  Config
	conn net.PacketConn
	udp  *net.UDPConn
	log  *slog.Logger
	rnd  io.Reader
	id   *handshake.Identity

	mu        sync.Mutex
	closed    bool
	refusing  bool // draining: no new sessions
	cookies   *handshake.Cookies
	responder *handshake.Responder
	initiator *handshake.Initiator
	defSeal   *wire.Sealer
	defOpen   *wire.Opener
	ep        session.Endpoint
	sessions  map[uint32]*Session         // by near session ID
	byAddr    map[netip.AddrPort]*Session // responder sessions by far address
	byPeer    map[[32]byte]*Session       // open sessions by far fingerprint
	peerCount map[[32]byte]int            // sessions per far fingerprint
	openTag   map[string]*opening
	openSID   map[uint32]*opening
	accepted  []*Session
	acceptCh  chan struct{}
	dirty     []*Session
	timers    timerHeap
	kick      chan struct{}
	pool      map[uint64]chan *handshake.KeyPair
	ephMu     sync.Mutex // guards eph: keying workers run without e.mu
	eph       map[uint64]*ephEntry
	keying    chan keyingJob
	inKeying  map[netip.AddrPort]uint32 // source -> ISID queued for a worker
	pkt       []byte
	hooks     []func()
	scratch   session.Scratch
	evq       []event
	evBytes   int        // charge of the message events in evq
	evStalled []*Session // sessions with messages left in them for want of evq room
	evSig     chan struct{}

	done chan struct{}
	wg   sync.WaitGroup

	C Counters
}

// New starts an engine on conn. The engine owns conn and closes it.
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
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
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
		cfg: cfg, conn: conn, log: log, rnd: rnd, id: cfg.Identity,
		cookies: cookies,
		defSeal: wire.NewDefaultSealer(), defOpen: wire.NewDefaultOpener(),
		sessions: map[uint32]*Session{}, byAddr: map[netip.AddrPort]*Session{}, byPeer: map[[32]byte]*Session{}, peerCount: map[[32]byte]int{},
		openTag: map[string]*opening{}, openSID: map[uint32]*opening{},
		acceptCh: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{}),
		pool: map[uint64]chan *handshake.KeyPair{}, eph: map[uint64]*ephEntry{}, evSig: make(chan struct{}, 1),
		keying: make(chan keyingJob, maxQueuedKeying), inKeying: map[netip.AddrPort]uint32{},
	}
	e.udp, _ = conn.(*net.UDPConn)
	e.responder = &handshake.Responder{ID: cfg.Identity, Policy: cfg.Policy, Rand: rnd, Ephemeral: e.ephemeral}
	e.initiator = &handshake.Initiator{ID: cfg.Identity, Policy: cfg.Policy, Rand: rnd}
	if cfg.Identity.Static == nil && cfg.EphemeralKeys > 0 {
		// Pre-generate ephemeral keys off the handshake's hot path.
		ch := make(chan *handshake.KeyPair, cfg.EphemeralKeys)
		e.pool[2] = ch
		e.wg.Add(1)
		go e.fillPool(handshake.Group2, ch)
	}
	e.wg.Add(2)
	go e.readLoop()
	go e.timerLoop()
	for range runtime.GOMAXPROCS(0) {
		e.wg.Add(1)
		go e.keyingWorker()
	}
	if cfg.Events != nil {
		e.wg.Add(1)
		go e.dispatch()
	}
	return e, nil
}

// event is a callback queued for the dispatcher; cost is what a message
// event counts against MaxEventBytes; s is the session it concerns (a
// callback that panics aborts that session, not the process).
type event struct {
	fn   func()
	cost int
	s    *Session
}

// eventCharge is what one queued message costs beyond its bytes (the
// closure and its queue slot), so that floods of tiny messages are bounded
// too.
const eventCharge = 96

// event queues a callback about session s for the dispatcher; e.mu held.
func (e *Engine) event(s *Session, fn func()) { e.queueEvent(event{fn: fn, s: s}) }

// Run runs fn on the event dispatcher, in order with the events, and
// returns once it ran (or at once if the engine is closed or not in event
// mode): code outside the callbacks uses it to touch the state that only
// the callbacks otherwise touch, without locks. fn must not call Run.
func (e *Engine) Run(fn func()) {
	e.mu.Lock()
	if e.closed || e.cfg.Events == nil {
		e.mu.Unlock()
		return
	}
	done := make(chan struct{})
	e.queueEvent(event{fn: func() { defer close(done); fn() }})
	e.mu.Unlock()
	select {
	case <-done:
	case <-e.done:
	}
}

// runEvent runs one callback. A panic in it is the application's bug about
// one session: it is logged with its stack, counted, and that session is
// aborted; the dispatcher and every other session carry on.
func (e *Engine) runEvent(ev event) {
	defer func() {
		if r := recover(); r != nil {
			e.C.EventPanics.Add(1)
			e.log.Error("event handler panicked; aborting its session", "panic", r, "stack", string(debug.Stack()))
			if ev.s != nil {
				ev.s.Abort()
			}
		}
	}()
	ev.fn()
}

func (e *Engine) queueEvent(ev event) {
	e.evq = append(e.evq, ev)
	e.evBytes += ev.cost
	select {
	case e.evSig <- struct{}{}:
	default:
	}
}

// dispatch runs event callbacks in order, without the engine lock.
func (e *Engine) dispatch() {
	defer e.wg.Done()
	for {
		select {
		case <-e.evSig:
		case <-e.done:
			e.mu.Lock()
			q := e.evq
			e.evq = nil
			e.mu.Unlock()
			for _, ev := range q {
				e.runEvent(ev)
			}
			return
		}
		for {
			e.mu.Lock()
			q := e.evq
			e.evq = nil
			e.mu.Unlock()
			if len(q) == 0 {
				break
			}
			cost := 0
			for _, ev := range q {
				e.runEvent(ev)
				cost += ev.cost
			}
			if cost > 0 {
				e.do(func(time.Time) { e.eventsDone(cost) })
			}
		}
	}
}

// eventsDone releases the charge of dispatched message events and, once
// the queue is down to half its bound, lets stalled sessions hand out
// their messages again (the caller flushes, which drains them and tells
// their senders that the windows opened); e.mu held.
func (e *Engine) eventsDone(cost int) {
	e.evBytes -= cost
	if e.evBytes > e.cfg.MaxEventBytes/2 || len(e.evStalled) == 0 {
		return
	}
	for _, s := range e.evStalled {
		s.stalled = false
		if !s.closed {
			e.markDirty(s)
		}
	}
	clear(e.evStalled)
	e.evStalled = e.evStalled[:0]
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
	e.eph[g.ID] = &ephEntry{kp: kp, uses: 1, born: now}
	return kp, nil
}

// LocalAddr is the socket's address.
func (e *Engine) LocalAddr() net.Addr { return e.conn.LocalAddr() }

// Identity is the engine's identity.
func (e *Engine) Identity() *handshake.Identity { return e.id }

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.C
	return Stats{
		PacketsIn: c.PacketsIn.Load(), PacketsOut: c.PacketsOut.Load(), BytesIn: c.BytesIn.Load(), BytesOut: c.BytesOut.Load(),
		DropShort: c.DropShort.Load(), DropUnknownSID: c.DropUnknownSID.Load(), DropDecrypt: c.DropDecrypt.Load(), DropMode: c.DropMode.Load(),
		DropCookie: c.DropCookie.Load(), DropCertificate: c.DropCertificate.Load(), DropKeying: c.DropKeying.Load(), DropLimited: c.DropLimited.Load(),
		DropOversize: c.DropOversize.Load(),
		HandshakesOK: c.HandshakesOK.Load(), HandshakesFailed: c.HandshakesFailed.Load(), CookieChanges: c.CookieChanges.Load(),
		RHellosSent: c.RHellosSent.Load(), RedirectsSent: c.RedirectsSent.Load(), FIHellosSent: c.FIHellosSent.Load(),
		SessionsOpen: c.SessionsOpen.Load(), EventPanics: c.EventPanics.Load(),
	}
}

// Refuse stops answering handshakes (a draining server): existing
// sessions carry on, new ones are not opened.
func (e *Engine) Refuse() {
	e.mu.Lock()
	e.refusing = true
	e.mu.Unlock()
}

// Close aborts every session, closes the socket and waits for the engine's
// goroutines.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	now := time.Now()
	for _, s := range e.sessions {
		s.core.Abort(now, e.sendTo)
	}
	for _, o := range e.openTag {
		o.fail(ErrClosed)
	}
	e.openTag, e.openSID = map[string]*opening{}, map[uint32]*opening{}
	close(e.done)
	e.flushHooksLocked()
	e.mu.Unlock()
	err := e.conn.Close()
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

// sendTo writes one datagram; called with e.mu held.
func (e *Engine) sendTo(b []byte, to netip.AddrPort) {
	if len(b) > wire.MaxSendSize {
		e.drop(&e.C.DropOversize, "oversize (send)", to)
		return
	}
	var err error
	if e.udp != nil {
		_, err = e.udp.WriteToUDPAddrPort(b, to)
	} else {
		_, err = e.conn.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err == nil {
		e.C.PacketsOut.Add(1)
		e.C.BytesOut.Add(uint64(len(b)))
	}
}

func (e *Engine) readLoop() {
	defer e.wg.Done()
	buf := make([]byte, wire.MaxRecvSize+1)
	failures := 0 // read errors in a row
	for {
		var n int
		var src netip.AddrPort
		var err error
		if e.udp != nil {
			n, src, err = e.udp.ReadFromUDPAddrPort(buf)
		} else {
			var a net.Addr
			n, a, err = e.conn.ReadFrom(buf)
			if ua, ok := a.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			select {
			case <-e.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Some errors are one datagram's (an ICMP error reported on
			// a later read, a truncated datagram); a socket that keeps
			// failing must not spin a core: back off up to a second.
			failures++
			if failures == 1 || failures%100 == 0 {
				e.log.Warn("UDP read error", "err", err, "in_a_row", failures)
			}
			if failures > 3 {
				select {
				case <-time.After(min(time.Duration(1<<min(failures-3, 10))*time.Millisecond, time.Second)):
				case <-e.done:
					return
				}
			}
			continue
		}
		failures = 0
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		e.C.PacketsIn.Add(1)
		e.C.BytesIn.Add(uint64(n))
		if n > wire.MaxRecvSize {
			e.drop(&e.C.DropOversize, "oversize", src)
			continue
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		e.receive(time.Now(), src, buf[:n])
		e.flushDirty(time.Now())
		hooks := e.takeHooks()
		e.mu.Unlock()
		for _, h := range hooks {
			h()
		}
	}
}

// Inject processes one datagram as if it had arrived on the socket from
// src, synchronously (fuzzing and tests drive the receive path with it).
func (e *Engine) Inject(src netip.AddrPort, d []byte) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.receive(time.Now(), src, append([]byte(nil), d...))
	e.flushDirty(time.Now())
	hooks := e.takeHooks()
	e.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// receive dispatches one datagram; e.mu held.
func (e *Engine) receive(now time.Time, src netip.AddrPort, d []byte) {
	sid, err := wire.SessionID(d)
	if err != nil || len(d) < wire.MinPacketSize {
		e.drop(&e.C.DropShort, "shorter than a packet", src)
		return
	}
	if sid == 0 {
		if e.refusing {
			e.drop(&e.C.DropLimited, "draining: no new sessions", src)
			return
		}
		e.startup(now, src, d)
		return
	}
	if s := e.sessions[sid]; s != nil {
		if err := s.core.Receive(now, src, d); err != nil {
			if errors.Is(err, session.ErrMode) {
				e.drop(&e.C.DropMode, "wrong packet mode", src)
			} else {
				e.dropErr(&e.C.DropDecrypt, "session packet does not decrypt", src, err)
			}
			return
		}
		if s.writers > 0 {
			s.notifyPending = true // acks may have freed send buffer
		}
		// The initiator's first session packet proves it has our
		// RIKeying: stop keeping a copy to resend.
		s.rikeying = nil
		e.markDirty(s)
		return
	}
	if o := e.openSID[sid]; o != nil {
		e.openingPacket(now, src, o, d)
		return
	}
	e.drop(&e.C.DropUnknownSID, "unknown session ID", src)
}

// openStartup parses a default-key packet and returns its chunks.
func (e *Engine) openStartup(src netip.AddrPort, d []byte) ([]byte, bool) {
	pt, err := e.defOpen.Open(d)
	if err != nil {
		e.drop(&e.C.DropDecrypt, "startup packet does not decrypt", src)
		return nil, false
	}
	h, n, err := wire.ParseHeader(pt)
	if err != nil || h.Mode() != wire.ModeStartup {
		e.drop(&e.C.DropMode, "startup packet in the wrong mode", src)
		return nil, false
	}
	return pt[n:], true
}

// sendStartup sends a startup packet (flags 0x0b) with one chunk.
func (e *Engine) sendStartup(now time.Time, sid uint32, to netip.AddrPort, chunk func([]byte) []byte) {
	e.pkt = wire.AppendHeader(e.pkt[:0], wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup, Timestamp: uint16(now.UnixMilli() / 4)})
	e.pkt = chunk(e.pkt)
	out := e.defSeal.Seal(nil, sid, e.pkt)
	e.sendTo(out, to)
}

// startup handles session-ID-0 packets: IHello, RHello, Redirect, IIKeying.
func (e *Engine) startup(now time.Time, src netip.AddrPort, d []byte) {
	chunks, ok := e.openStartup(src, d)
	if !ok {
		return
	}
	for b := chunks; ; {
		c, rest, ok := wire.NextChunk(b)
		if !ok {
			return
		}
		b = rest
		switch c.Type {
		case wire.ChunkIHello:
			if ih, err := wire.ParseIHello(c.Payload); err == nil {
				e.onIHello(now, src, ih)
			} else {
				e.drop(&e.C.DropKeying, "malformed IHello", src)
			}
			return // at most one IHello per packet
		case wire.ChunkRHello:
			if rh, err := wire.ParseRHello(c.Payload); err == nil {
				e.onRHello(now, src, rh)
			}
		case wire.ChunkRedirect:
			if rd, err := wire.ParseRedirect(c.Payload); err == nil {
				e.onRedirect(now, src, rd)
			}
		case wire.ChunkIIKeying:
			if ik, err := wire.ParseIIKeying(c.Payload); err == nil {
				e.onIIKeying(now, src, ik)
			} else {
				e.drop(&e.C.DropKeying, "malformed IIKeying", src)
			}
			return
		}
	}
}

// onIHello answers an IHello that selects us with an RHello, and hands the
// others to the application (introductions).
func (e *Engine) onIHello(now time.Time, src netip.AddrPort, ih wire.IHello) {
	epd, err := handshake.ParseEPD(ih.EPD)
	if err != nil || len(ih.Tag) == 0 || len(ih.Tag) > 256 {
		e.drop(&e.C.DropKeying, "malformed IHello (EPD or tag)", src)
		return
	}
	if epd.Selects(e.id.Parsed) {
		if epd.HasAncillary && !epd.HasFP && e.cfg.SelectAncillary != nil && !e.cfg.SelectAncillary(src, epd.Ancillary) {
			return
		}
		if e.cfg.AllowHello != nil && !e.cfg.AllowHello(src) {
			e.drop(&e.C.DropLimited, "RHello budget", src)
			return
		}
		if e.cfg.HelloRedirect != nil {
			if addrs := e.cfg.HelloRedirect(src); len(addrs) > 0 {
				e.sendStartup(now, 0, src, wire.Redirect{Tag: ih.Tag, Addresses: addrs}.Append)
				e.C.RedirectsSent.Add(1)
				return
			}
		}
		e.sendRHello(now, src, ih.Tag)
		return
	}
	if epd.HasFP && e.cfg.UnmatchedIHello != nil {
		tag := append([]byte(nil), ih.Tag...)
		epdCopy, _ := handshake.ParseEPD(append([]byte(nil), ih.EPD...))
		cb := e.cfg.UnmatchedIHello
		e.hooks = append(e.hooks, func() { cb(src, epdCopy, tag) })
	}
}

func (e *Engine) sendRHello(now time.Time, to netip.AddrPort, tag []byte) {
	cookie := e.cookies.Make(to, tag, now)
	e.sendStartup(now, 0, to, wire.RHello{Tag: tag, Cookie: cookie, Certificate: e.id.Certificate}.Append)
	e.C.RHellosSent.Add(1)
}

// Redirect sends a Responder Redirect to an initiator: the addresses at
// which the endpoint it asked for can be reached.
func (e *Engine) Redirect(to netip.AddrPort, tag []byte, addrs []wire.Address) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.sendStartup(time.Now(), 0, to, wire.Redirect{Tag: tag, Addresses: addrs}.Append)
	e.C.RedirectsSent.Add(1)
}

// onIIKeying runs the responder side of the keying exchange.
func (e *Engine) onIIKeying(now time.Time, src netip.AddrPort, ik wire.IIKeying) {
	switch err := e.cookies.Check(ik.Cookie, src, now); {
	case errors.Is(err, handshake.ErrCookieAddress):
		// Ours, but the initiator's address changed since the IHello.
		e.sendStartup(now, ik.ISID, src, wire.CookieChange{Old: ik.Cookie, New: e.cookies.Make(src, ik.Cookie[:16], now)}.Append)
		e.C.CookieChanges.Add(1)
		return
	case err != nil:
		e.dropErr(&e.C.DropCookie, "IIKeying cookie", src, err)
		return
	}
	// A retransmitted IIKeying for a session we already opened gets the
	// same RIKeying again.
	if s := e.byAddr[src]; s != nil && s.isid == ik.ISID && s.skicHash == sha256.Sum256(ik.SKIC) {
		if s.rikeying != nil {
			e.sendStartup(now, ik.ISID, src, func(b []byte) []byte { return append(b, s.rikeying...) })
		}
		// Otherwise the initiator already proved it has the RIKeying:
		// this is a late duplicate.
		return
	}
	if e.cfg.AllowKeying != nil && !e.cfg.AllowKeying(src) {
		e.drop(&e.C.DropLimited, "keying refused by the application's limits", src)
		return
	}
	// Glare: we are opening a session to this same address ourselves.
	for _, o := range e.openTag {
		if o.dest == src || o.hasCandidate(src) {
			if handshake.WinsGlare(e.id.Certificate, ik.Certificate) {
				return // our own handshake will complete
			}
			o.glareLost = true
		}
	}
	// The Diffie-Hellman work runs on a keying worker, off the receive
	// goroutine and without the engine lock, so that handshakes use every
	// core. A retransmission of an IIKeying already queued is dropped.
	if e.inKeying[src] == ik.ISID {
		return
	}
	job := keyingJob{src: src, ik: wire.IIKeying{ISID: ik.ISID, Cookie: clone(ik.Cookie), Certificate: clone(ik.Certificate),
		SKIC: clone(ik.SKIC), Signature: clone(ik.Signature)}}
	select {
	case e.keying <- job:
		e.inKeying[src] = ik.ISID
	default:
		e.drop(&e.C.DropLimited, "keying queue full", src) // the initiator retransmits
	}
}

// maxQueuedKeying bounds the handshakes waiting for a keying worker
// (rtmfp-cpp allows 16 queued Diffie-Hellman computations).
const maxQueuedKeying = 64

type keyingJob struct {
	src netip.AddrPort
	ik  wire.IIKeying
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// keyingWorker computes responder keying and completes the handshake.
func (e *Engine) keyingWorker() {
	defer e.wg.Done()
	for {
		select {
		case <-e.done:
			return
		case job := <-e.keying:
			acc, err := e.responder.Respond(job.ik)
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				return
			}
			if e.inKeying[job.src] == job.ik.ISID {
				delete(e.inKeying, job.src)
			}
			now := time.Now()
			e.completeKeying(now, job.src, job.ik, acc, err)
			e.flushDirty(now)
			hooks := e.takeHooks()
			e.mu.Unlock()
			for _, h := range hooks {
				h()
			}
		}
	}
}

// completeKeying opens the responder session once keying is computed;
// e.mu held.
func (e *Engine) completeKeying(now time.Time, src netip.AddrPort, ik wire.IIKeying, acc *handshake.Accepted, err error) {
	if err != nil {
		e.C.HandshakesFailed.Add(1)
		if errors.Is(err, handshake.ErrCertificate) {
			e.dropErr(&e.C.DropCertificate, "IIKeying certificate", src, err)
		} else {
			e.dropErr(&e.C.DropKeying, "IIKeying refused", src, err)
		}
		return
	}
	if s := e.byAddr[src]; s != nil && s.isid == ik.ISID && s.skicHash == sha256.Sum256(ik.SKIC) {
		return // completed meanwhile
	}
	if old := e.byAddr[src]; old != nil {
		if old.farCert != sha256.Sum256(ik.Certificate) {
			return // another endpoint's session lives at this address
		}
		old.core.Abort(now, e.sendTo) // the peer restarted
	}
	sid, err := e.newSID()
	if err != nil {
		e.log.Error("no session ID for a new session", "err", err)
		e.dropErr(&e.C.DropKeying, "no session ID", src, err)
		return
	}
	sealer, opener := acc.Keys.Ciphers()
	s := e.newSessionSID(now, false, sid, ik.ISID, src, sealer, opener, acc.Keys, acc.Certificate, ik.Certificate, false)
	s.isid, s.skicHash = ik.ISID, sha256.Sum256(ik.SKIC)
	s.rikeying = wire.RIKeying{RSID: s.core.NearSID(), SKRC: acc.SKRC, Signature: handshake.Signature}.Append(nil)
	e.byAddr[src] = s
	s.addrKey, s.inByAddr = src, true
	e.sendStartup(now, ik.ISID, src, func(b []byte) []byte { return append(b, s.rikeying...) })
	e.C.HandshakesOK.Add(1)
	for _, o := range e.openTag {
		if o.glareLost && o.state == openKeyingSent && string(o.respCertRaw) == string(ik.Certificate) {
			o.finish(s) // the far end's session replaces ours
		}
	}
	if ev := e.cfg.Events; ev != nil {
		e.event(s, func() { ev.SessionOpened(s) })
		return
	}
	e.accepted = append(e.accepted, s)
	e.signalAccept()
}

func (e *Engine) signalAccept() {
	close(e.acceptCh)
	e.acceptCh = make(chan struct{})
}

// ErrRandom is returned when the random source fails (or keeps repeating
// itself) while picking a session ID.
var ErrRandom = errors.New("engine: random source failed")

// newSID picks an unused random non-zero session ID. With 32-bit IDs and
// far fewer sessions a few draws always suffice; a random source that
// fails, or that gives taken IDs 64 times in a row, is broken, and the
// handshake is dropped rather than the engine spinning under its lock.
func (e *Engine) newSID() (uint32, error) {
	var b [4]byte
	for range 64 {
		if _, err := io.ReadFull(e.rnd, b[:]); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrRandom, err)
		}
		sid := binary.BigEndian.Uint32(b[:])
		if sid != 0 && e.sessions[sid] == nil && e.openSID[sid] == nil {
			return sid, nil
		}
	}
	return 0, ErrRandom
}

func (e *Engine) newSessionSID(now time.Time, initiator bool, nearSID, farSID uint32, dest netip.AddrPort, sealer *wire.Sealer, opener *wire.Opener,
	keys handshake.Keys, farCert *handshake.Certificate, farCertRaw []byte, introducer bool) *Session {
	s := &Session{e: e, initiator: initiator, farCert: sha256.Sum256(farCertRaw), peerID: farCert.Fingerprint(),
		nearNonce: keys.NearNonce, farNonce: keys.FarNonce}
	s.core = session.New(session.Config{
		Initiator: initiator, NearSID: nearSID, FarSID: farSID, Dest: dest,
		Sealer: sealer, Opener: opener, Handler: (*handler)(s), Endpoint: &e.ep,
		RecvBuffer: e.cfg.RecvBuffer, SessionRecvBuffer: e.cfg.SessionRecvBuffer, Keepalive: e.cfg.Keepalive, DeadAfter: e.cfg.DeadAfter, IdleTimeout: e.cfg.IdleTimeout,
		Introducer: introducer, Scratch: &e.scratch,
	}, now)
	e.sessions[nearSID] = s
	e.peerCount[s.peerID]++
	if _, dup := e.byPeer[s.peerID]; !dup {
		e.byPeer[s.peerID] = s
	}
	e.C.SessionsOpen.Add(1)
	e.schedule(s, now)
	return s
}

// sessionClosed unregisters a session; e.mu held (called from the core's
// Closed event).
func (e *Engine) sessionClosed(s *Session) {
	nsid := s.core.NearSID()
	if e.sessions[nsid] == s {
		delete(e.sessions, nsid)
		e.C.SessionsOpen.Add(-1)
	}
	if s.inByAddr && e.byAddr[s.addrKey] == s {
		delete(e.byAddr, s.addrKey)
	}
	if e.peerCount[s.peerID]--; e.peerCount[s.peerID] <= 0 {
		delete(e.peerCount, s.peerID)
	}
	if e.byPeer[s.peerID] == s {
		delete(e.byPeer, s.peerID)
		if e.peerCount[s.peerID] > 0 { // rare: another session with the same peer
			for _, o := range e.sessions {
				if o.peerID == s.peerID && o.core.IsOpen() {
					e.byPeer[s.peerID] = o
					break
				}
			}
		}
	}
	s.closed = true
	if s.done != nil {
		close(s.done)
	}
	s.broadcast()
	if !s.gone {
		e.sessionGone(s)
	}
}

// sessionGone tells an event-driven application that a session has left
// the open state: closed, or closing (an orderly close lingers for up to
// 19 s to acknowledge the far end's retransmitted close requests, but
// nothing more will be delivered, so the application forgets the peer
// now). e.mu held.
func (e *Engine) sessionGone(s *Session) {
	s.gone = true
	ev := e.cfg.Events
	if ev == nil {
		return
	}
	err := s.core.Err()
	// What the session still holds goes out before its end, whatever the
	// queue's bound: it is bounded by the session's receive buffer.
	for _, rf := range s.drain {
		e.drainFlow(rf, true)
	}
	s.drain = nil
	e.event(s, func() { ev.SessionClosed(s, err) })
}

// drainFlow hands a flow's complete messages (and its end) to the
// dispatcher. Unless force is set it stops when the dispatcher's queue is
// full and reports false: the flow keeps its place in s.drain. e.mu held.
func (e *Engine) drainFlow(rf *RecvFlow, force bool) bool {
	ev := e.cfg.Events
	for {
		if !force && e.evBytes >= e.cfg.MaxEventBytes && rf.core.Pending() > 0 {
			return false
		}
		msg, ok, eof := rf.core.Read()
		if ok {
			e.queueEvent(event{fn: func() { ev.Message(rf, msg) }, cost: len(msg) + eventCharge, s: rf.s})
			continue
		}
		if (eof || rf.s.core.IsClosed()) && !rf.closedSent {
			rf.closedSent = true
			e.event(rf.s, func() { ev.FlowClosed(rf) })
		}
		rf.queued = false
		return true
	}
}

// markDirty queues a session for flushing at the end of the current
// operation.
func (e *Engine) markDirty(s *Session) {
	if !s.dirty {
		s.dirty = true
		e.dirty = append(e.dirty, s)
	}
}

// flushDirty sends what dirty sessions have queued and reschedules their
// timers; e.mu held.
func (e *Engine) flushDirty(now time.Time) {
	for len(e.dirty) > 0 {
		s := e.dirty[0]
		e.dirty = e.dirty[1:]
		s.dirty = false
		kept := s.drain[:0]
		for _, rf := range s.drain {
			if !e.drainFlow(rf, false) {
				kept = append(kept, rf)
			}
		}
		clear(s.drain[len(kept):])
		s.drain = kept
		if len(kept) > 0 && !s.stalled {
			s.stalled = true
			e.evStalled = append(e.evStalled, s)
		}
		s.core.Flush(now, e.sendTo)
		if !s.gone && !s.core.IsOpen() {
			e.sessionGone(s)
		}
		for s.core.WantsFlush(now) {
			before := s.core.Stats.PacketsSent
			s.core.Flush(now, e.sendTo)
			if s.core.Stats.PacketsSent == before {
				break // nothing could go after all: never spin under the lock
			}
		}
		if s.notifyPending {
			s.notifyPending = false
			s.broadcast()
		}
		e.schedule(s, now)
	}
}

func (e *Engine) takeHooks() []func() {
	h := e.hooks
	e.hooks = nil
	return h
}

func (e *Engine) flushHooksLocked() {
	hooks := e.takeHooks()
	if len(hooks) == 0 {
		return
	}
	go func() {
		for _, h := range hooks {
			h()
		}
	}()
}

// schedule (re)arms a session's timer if its deadline moved earlier.
func (e *Engine) schedule(s *Session, now time.Time) {
	d := s.core.Deadline(now)
	if d.IsZero() {
		return
	}
	if !s.timerAt.IsZero() && !d.Before(s.timerAt) {
		return // an earlier entry is already queued; it re-arms when it fires
	}
	s.timerAt = d
	heap.Push(&e.timers, timerEntry{at: d, s: s, ver: s.timerVer + 1})
	s.timerVer++
	if e.timers[0].s == s {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// timerLoop fires session and opening timers.
func (e *Engine) timerLoop() {
	defer e.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		now := time.Now()
		for len(e.timers) > 0 && !e.timers[0].at.After(now) {
			te := heap.Pop(&e.timers).(timerEntry)
			s := te.s
			if te.ver != s.timerVer {
				continue // superseded
			}
			s.timerAt = time.Time{}
			s.core.Timer(now)
			e.markDirty(s)
		}
		e.openingTimers(now)
		e.flushDirty(now)
		next := now.Add(time.Hour)
		if len(e.timers) > 0 {
			next = e.timers[0].at
		}
		if o := e.nextOpeningTimer(); !o.IsZero() && o.Before(next) {
			next = o
		}
		hooks := e.takeHooks()
		e.mu.Unlock()
		for _, h := range hooks {
			h()
		}
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-e.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-e.done:
			return
		}
	}
}

type timerEntry struct {
	at  time.Time
	s   *Session
	ver uint64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return x
}

// Accept waits for the next session another endpoint opened to us.
func (e *Engine) Accept(ctx context.Context) (*Session, error) {
	for {
		e.mu.Lock()
		if len(e.accepted) > 0 {
			s := e.accepted[0]
			e.accepted = e.accepted[1:]
			e.mu.Unlock()
			return s, nil
		}
		if e.closed {
			e.mu.Unlock()
			return nil, ErrClosed
		}
		ch := e.acceptCh
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.done:
			return nil, ErrClosed
		}
	}
}

// Sessions returns the open sessions.
func (e *Engine) Sessions() []*Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		out = append(out, s)
	}
	return out
}

// SessionByPeer returns an open session whose far end has the peer ID.
func (e *Engine) SessionByPeer(id [32]byte) *Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byPeer[id]
}

// Lock runs fn with the engine lock held, for callers (the server) that
// keep their own tables in step with the engine's.
func (e *Engine) do(fn func(now time.Time)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	now := time.Now()
	fn(now)
	e.flushDirty(now)
}
