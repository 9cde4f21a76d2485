package engine

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/session"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// shard is one socket of an engine with the sessions it owns. One
// goroutine (the reader) reads a batch of datagrams, runs them through the
// protocol under the shard's lock, writes what they caused in one batch,
// runs the Diffie-Hellman work of new handshakes, then the application's
// hooks and event callbacks, and sleeps until the next datagram, timer or
// wake-up: a packet costs no hand-off between goroutines.
type shard struct {
	e    *Engine
	idx  int
	n    int // shards in the engine: a near session ID is ours iff ID mod n == idx
	sock socket

	mu       sync.Mutex
	sessions map[uint32]*Session         // by near session ID
	byAddr   map[netip.AddrPort]*Session // responder sessions by far address
	openings []*opening                  // outgoing sessions this shard drives
	openSID  map[uint32]*opening         // those past the RHello, by near session ID
	dirty    []*Session
	timers   timerHeap
	next     time.Time // when the reader wakes up next (zero: only for a datagram)
	busy     bool      // the reader is in an iteration: it flushes, dispatches and re-arms before it sleeps, so writes wait for it
	gen      int       // the current reader's generation (see split)

	cookies *handshake.Cookies
	defSeal *wire.Sealer
	defOpen *wire.Opener
	ep      session.Endpoint
	scratch session.Scratch
	pkt     []byte
	fih     []byte // a Forwarded IHello being sent
	out     outBatch
	keying  []keyingJob
	hellos  []unmatchedHello
	boxMu   sync.Mutex // guards inbox (a leaf lock: other shards fill it)
	inbox   []forwardedDatagram

	// Event mode (see events.go).
	evq, evSpare []event
	evBytes      int
	evStalled    []*Session
	dispatching  bool
	watchdog     *time.Timer
	roundGen     int       // the reader generation running the current round of callbacks
	roundStart   time.Time // when that round began

	injectMu sync.Mutex // Inject's batch
	injectIn *inBatch

	packetsIn, packetsOut, bytesIn, bytesOut, dropSend, forwarded atomic.Uint64
	wakeups                                                       atomic.Uint64 // the reader's iterations
}

// unmatchedHello is an IHello for the application's UnmatchedIHello hook;
// it refers to the read batch, valid until the next read.
type unmatchedHello struct {
	src netip.AddrPort
	epd handshake.EPD
	tag []byte
}

// forwardedDatagram is a datagram another shard received for a session
// or an opening of this one (without kernel steering: after an address
// change).
type forwardedDatagram struct {
	src netip.AddrPort
	d   []byte
}

func newShard(e *Engine, idx, n int, sock socket, cookies *handshake.Cookies) *shard {
	return &shard{e: e, idx: idx, n: n, sock: sock, cookies: cookies,
		sessions: map[uint32]*Session{}, byAddr: map[netip.AddrPort]*Session{},
		defSeal: wire.NewDefaultSealer(), defOpen: wire.NewDefaultOpener()}
}

// loop is the shard's reader. gen is its generation: a reader whose event
// callback blocked hands the socket to a new one (split) and ends once it
// has dispatched what was queued.
func (sh *shard) loop(gen int) {
	defer sh.e.wg.Done()
	in := newInBatch()
	backoff := readBackoff{warn: func(err error, n int) { sh.e.log.Warn("UDP read error", "err", err, "in_a_row", n) }}
	for {
		sh.mu.Lock()
		if sh.gen != gen {
			sh.mu.Unlock()
			return
		}
		deadline := sh.next
		sh.boxMu.Lock()
		boxed := len(sh.inbox) > 0
		sh.boxMu.Unlock()
		if len(sh.evq) > 0 && !sh.dispatching || boxed {
			deadline = pollNow // work is waiting: just poll
		}
		sh.mu.Unlock()
		n, err := sh.sock.read(in, deadline)
		if err != nil {
			if sh.e.closed.Load() || errors.Is(err, net.ErrClosed) {
				sh.dispatch(gen) // what Close queued (SessionClosed)
				return
			}
			if !backoff.failed(err, sh.e.done) {
				return
			}
			continue
		}
		backoff.ok()
		sh.wakeups.Add(1)
		if sh.e.closed.Load() {
			sh.dispatch(gen)
			return
		}
		sh.process(in, n, true)
		if !sh.dispatch(gen) {
			return // a newer reader has the socket
		}
		sh.finish(gen)
	}
}

// finish ends a reader's iteration: what the datagrams, the timers and the
// callbacks made the sessions send goes out together (a reply and the
// acknowledgement of its request share a packet, the packets one system
// call), and the reader re-arms for the next timer.
func (sh *shard) finish(gen int) {
	sh.mu.Lock()
	if sh.gen == gen {
		sh.busy = false
	}
	now := time.Now()
	if !sh.e.closed.Load() {
		sh.flushDirty(now)
	}
	sh.flushOut()
	sh.next = sh.deadline(now, time.Time{})
	sh.mu.Unlock()
}

// process runs a batch of datagrams (and whatever else is due) through the
// protocol. reader says whether the shard's reader calls it (Inject calls
// it too).
func (sh *shard) process(in *inBatch, n int, reader bool) {
	e := sh.e
	now := time.Now()
	sh.mu.Lock()
	if e.closed.Load() {
		sh.mu.Unlock()
		return
	}
	if reader {
		sh.busy = true
	}
	for i := range n {
		d := in.buf[i][:in.n[i]]
		src := netip.AddrPortFrom(in.src[i].Addr().Unmap(), in.src[i].Port())
		sh.packetsIn.Add(1)
		sh.bytesIn.Add(uint64(len(d)))
		if len(d) > wire.MaxRecvSize {
			e.drop(&e.C.DropOversize, "oversize", src)
			continue
		}
		sh.receive(now, src, d, false)
	}
	sh.boxMu.Lock()
	box := sh.inbox
	sh.inbox = nil
	sh.boxMu.Unlock()
	for _, f := range box {
		sh.receive(now, f.src, f.d, true)
	}
	if reader {
		sh.runTimers(now)
		// The batch's messages are queued now, so that this iteration's
		// callbacks run them and their answers go out with the batch's
		// acknowledgements (drained at the finish, they would wait for
		// another iteration, and the acknowledgements would go alone).
		for _, s := range sh.dirty {
			sh.drainSession(s)
			if !s.gone && !s.core.IsOpen() {
				sh.sessionGone(s)
			}
		}
	}
	if len(sh.keying) > 0 {
		// Nothing waits on the Diffie-Hellman work.
		sh.flushDirty(now)
		sh.flushOut()
		sh.runKeying()
	}
	if !reader {
		sh.flushDirty(now)
		sh.flushOut()
	}
	hellos := sh.hellos
	if len(hellos) > 0 {
		sh.hellos = nil // ours until the hooks ran (Inject may run a batch meanwhile)
	}
	wake := !reader && (len(sh.evq) > 0 || sh.deadlineMoved())
	sh.mu.Unlock()
	if wake {
		sh.sock.wake()
	}
	if len(hellos) == 0 {
		return
	}
	if cb := e.cfg.UnmatchedIHello; cb != nil {
		for i := range hellos {
			cb(hellos[i].src, hellos[i].epd, hellos[i].tag)
		}
	}
	clear(hellos)
	sh.mu.Lock()
	if sh.hellos == nil {
		sh.hellos = hellos[:0]
	}
	sh.mu.Unlock()
}

// receive dispatches one datagram; sh.mu held. forwarded marks one that
// another shard handed over (it is not handed on again).
func (sh *shard) receive(now time.Time, src netip.AddrPort, d []byte, forwarded bool) {
	e := sh.e
	sid, err := wire.SessionID(d)
	if err != nil || len(d) < wire.MinPacketSize {
		e.drop(&e.C.DropShort, "shorter than a packet", src)
		return
	}
	if sid == 0 {
		if e.refusing.Load() {
			e.drop(&e.C.DropLimited, "draining: no new sessions", src)
			return
		}
		sh.startup(now, src, d, forwarded)
		return
	}
	if owner := e.shardFor(sid); owner != sh {
		if !forwarded {
			sh.forward(owner, src, d)
		}
		return
	}
	if s := sh.sessions[sid]; s != nil {
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
		sh.markDirty(s)
		return
	}
	if o := sh.opening(sid); o != nil {
		sh.openingPacket(now, src, o, d)
		return
	}
	e.drop(&e.C.DropUnknownSID, "unknown session ID", src)
}

// forward hands a datagram to the shard that owns it; sh.mu held (the
// owner's lock is not taken: the inbox has its own).
func (sh *shard) forward(owner *shard, src netip.AddrPort, d []byte) {
	sh.forwarded.Add(1)
	owner.boxMu.Lock()
	if len(owner.inbox) < maxInbox {
		owner.inbox = append(owner.inbox, forwardedDatagram{src: src, d: append([]byte(nil), d...)})
	}
	owner.boxMu.Unlock()
	owner.sock.wake()
}

// maxInbox bounds the datagrams waiting in a shard's inbox.
const maxInbox = 1024

// sendTo queues one datagram for the shard's next write; sh.mu held.
func (sh *shard) sendTo(b []byte, to netip.AddrPort) {
	if len(b) > wire.MaxSendSize {
		sh.e.drop(&sh.e.C.DropOversize, "oversize (send)", to)
		return
	}
	sh.out.add(b, to)
}

// flushOut writes the queued datagrams; sh.mu held (a write never blocks).
func (sh *shard) flushOut() {
	n := sh.out.len()
	if n == 0 {
		return
	}
	sent := sh.sock.write(&sh.out)
	sh.packetsOut.Add(uint64(sent))
	sh.bytesOut.Add(uint64(len(sh.out.data)))
	if sent < n {
		sh.dropSend.Add(uint64(n - sent))
	}
	sh.out.reset()
}

// startupPacket starts a startup packet (flags 0x0b) in sh.pkt; the
// caller appends its chunk and calls sealStartup. sh.mu held.
func (sh *shard) startupPacket(now time.Time) []byte {
	return wire.AppendHeader(sh.pkt[:0], wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup, Timestamp: uint16(now.UnixMilli() / 4)})
}

// sealStartup seals sh.pkt under the default key and queues it; sh.mu
// held.
func (sh *shard) sealStartup(sid uint32, to netip.AddrPort) {
	start := len(sh.out.data)
	sh.out.data = sh.defSeal.Seal(sh.out.data, sid, sh.pkt)
	if len(sh.out.data)-start > wire.MaxSendSize {
		sh.out.data = sh.out.data[:start]
		sh.e.drop(&sh.e.C.DropOversize, "oversize (send)", to)
		return
	}
	sh.out.ends = append(sh.out.ends, len(sh.out.data))
	sh.out.dst = append(sh.out.dst, to)
}

// do runs fn under the shard's lock, then flushes what it caused.
func (sh *shard) do(fn func(now time.Time)) {
	sh.mu.Lock()
	if sh.e.closed.Load() {
		sh.mu.Unlock()
		return
	}
	fn(time.Now())
	sh.unlockAndWake()
}

// unlockAndWake sends what the sessions have to send, releases the lock
// and wakes the reader if it sleeps while events wait or a timer moved
// earlier. In the middle of the reader's iteration (the callbacks write
// from there) it leaves both to the reader's finish.
func (sh *shard) unlockAndWake() {
	if sh.busy {
		sh.mu.Unlock()
		return
	}
	sh.flushDirty(time.Now())
	sh.flushOut()
	wake := len(sh.evq) > 0 && !sh.dispatching || sh.deadlineMoved()
	sh.mu.Unlock()
	if wake {
		sh.sock.wake()
	}
}

// deadlineMoved reports that the earliest timer is now before the
// reader's wake-up; sh.mu held.
func (sh *shard) deadlineMoved() bool {
	d := sh.deadline(time.Now(), sh.next)
	return !d.IsZero() && (sh.next.IsZero() || d.Before(sh.next))
}

// markDirty queues a session for flushing at the end of the current
// operation; sh.mu held.
func (sh *shard) markDirty(s *Session) {
	if !s.dirty {
		s.dirty = true
		sh.dirty = append(sh.dirty, s)
	}
}

// flushDirty sends what dirty sessions have queued and reschedules their
// timers; sh.mu held.
func (sh *shard) flushDirty(now time.Time) {
	for i := 0; i < len(sh.dirty); i++ {
		s := sh.dirty[i]
		sh.dirty[i] = nil
		s.dirty = false
		sh.drainSession(s)
		s.core.Flush(now, sh.sendTo)
		if !s.closeBy.IsZero() || !s.abortBy.IsZero() {
			// After the flush: what was written before CloseAfter goes
			// out before the close.
			if sh.closeDue(s, now) {
				s.core.Flush(now, sh.sendTo)
			}
		}
		if !s.gone && !s.core.IsOpen() {
			sh.sessionGone(s)
		}
		for s.core.WantsFlush(now) {
			before := s.core.Stats.PacketsSent
			s.core.Flush(now, sh.sendTo)
			if s.core.Stats.PacketsSent == before {
				break // nothing could go after all: never spin under the lock
			}
		}
		if s.notifyPending {
			s.notifyPending = false
			s.broadcast()
		}
		sh.schedule(s, now)
	}
	sh.dirty = sh.dirty[:0]
}

// drainSession queues the events of a session's readable flows, as far
// as the event budget allows; sh.mu held.
func (sh *shard) drainSession(s *Session) {
	if len(s.drain) == 0 {
		return
	}
	kept := s.drain[:0]
	for _, rf := range s.drain {
		if !sh.drainFlow(rf, false) {
			kept = append(kept, rf)
		}
	}
	clear(s.drain[len(kept):])
	s.drain = kept
	if len(kept) == 0 {
		s.drain = nil
	} else if !s.stalled {
		s.stalled = true
		sh.evStalled = append(sh.evStalled, s)
	}
}

// schedule (re)arms a session's timer if its deadline moved earlier;
// sh.mu held.
func (sh *shard) schedule(s *Session, now time.Time) {
	d := timerDue(s, now)
	if d.IsZero() {
		return
	}
	if !s.timerAt.IsZero() && !d.Before(s.timerAt) {
		return // an earlier entry is already queued; it re-arms when it fires
	}
	s.timerAt = d
	s.timerVer++
	sh.timers.push(timerEntry{at: d, s: s, ver: s.timerVer})
}

// timerDue is when a session's timer has to run next (zero: no need);
// sh.mu held.
func timerDue(s *Session, now time.Time) time.Time {
	d := s.core.Deadline(now)
	if d.IsZero() {
		return d
	}
	for _, t := range [2]time.Time{s.closeBy, s.abortBy} {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	return d
}

// runTimers fires due session and opening timers; sh.mu held.
func (sh *shard) runTimers(now time.Time) {
	for len(sh.timers) > 0 && !sh.timers[0].at.After(now) {
		te := sh.timers.pop()
		s := te.s
		if te.ver != s.timerVer {
			continue // superseded
		}
		s.timerAt = time.Time{}
		s.core.Timer(now)
		sh.markDirty(s) // flushDirty runs CloseAfter's checks
	}
	if len(sh.openings) > 0 {
		sh.openingTimers(now)
	}
}

// closeDue carries out a session's CloseAfter and reports whether it
// closed or aborted it now; sh.mu held.
func (sh *shard) closeDue(s *Session, now time.Time) bool {
	if s.core.IsClosed() {
		s.closeFlow, s.closeBy, s.abortBy = nil, time.Time{}, time.Time{}
		return false
	}
	acted := false
	if !s.closeBy.IsZero() {
		f := s.closeFlow
		flowDone := f == nil || f.core.Complete()
		if f != nil {
			if rej, _ := f.core.Rejected(); rej {
				flowDone = true
			}
		}
		if !flowDone && now.Before(s.closeBy) {
			return false
		}
		s.closeFlow, s.closeBy = nil, time.Time{}
		s.core.Close(now)
		s.abortBy = now.Add(s.abortAfter)
		acted = true
	}
	if !s.abortBy.IsZero() && !now.Before(s.abortBy) {
		s.abortBy = time.Time{}
		s.core.Abort(now, sh.sendTo)
		acted = true
	}
	return acted
}

// deadline is the earliest timer; sh.mu held.
//
// Entries from upto on (zero: none) are taken as they are: deadlineMoved,
// called on every write from outside the reader, only asks whether one is
// before the reader's wake-up, so it checks no session's deadline beyond
// it (the reader's finish checks them all).
func (sh *shard) deadline(now, upto time.Time) time.Time {
	// The first entry must be worth a wake-up (one costs more than the
	// protocol work of a datagram): superseded entries go, and so does a
	// session's whose deadline moved later since it was queued (what was
	// due got done: an answer acknowledged, an acknowledgement sent with
	// data); it is queued again for its new deadline.
	for len(sh.timers) > 0 {
		te := sh.timers[0]
		s := te.s
		if te.ver == s.timerVer {
			if !upto.IsZero() && !te.at.Before(upto) {
				break
			}
			d := timerDue(s, now)
			if !d.IsZero() && !d.After(te.at) {
				break
			}
			s.timerAt = time.Time{}
			s.timerVer++
			sh.timers.pop()
			sh.schedule(s, now)
			continue
		}
		sh.timers.pop()
	}
	var next time.Time
	if len(sh.timers) > 0 {
		next = sh.timers[0].at
	}
	if o := sh.nextOpeningTimer(); !o.IsZero() && (next.IsZero() || o.Before(next)) {
		next = o
	}
	return next
}

// newSID picks an unused random session ID of this shard; sh.mu held.
func (sh *shard) newSID() (uint32, error) {
	n := uint32(sh.n)
	own := func(r uint32) uint32 { return r - r%n + uint32(sh.idx) }
	return randomSID(sh.e.rnd, own, func(sid uint32) bool {
		return sh.sessions[sid] != nil || sh.opening(sid) != nil
	})
}

// injectBatch is the one-datagram batch Inject uses; sh.injectMu held.
func (sh *shard) injectBatch() *inBatch {
	if sh.injectIn == nil {
		sh.injectIn = newInBatch()
	}
	return sh.injectIn
}

type timerEntry struct {
	at  time.Time
	s   *Session
	ver uint64
}

// timerHeap is a binary min-heap of session timers (typed, so that pushing
// does not box an entry into an interface).
type timerHeap []timerEntry

func (h *timerHeap) push(t timerEntry) {
	*h = append(*h, t)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if !a[i].at.Before(a[p].at) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *timerHeap) pop() timerEntry {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a[last] = timerEntry{}
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l].at.Before(a[m].at) {
			m = l
		}
		if r < len(a) && a[r].at.Before(a[m].at) {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
