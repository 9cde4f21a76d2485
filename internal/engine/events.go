package engine

import (
	"net/netip"
	"runtime/debug"
	"time"
)

type eventKind uint8

const (
	evSessionOpened eventKind = iota + 1
	evFlowOpened
	evMessage
	evFlowClosed
	evSessionClosed
	evAddressChanged
	evBarrier
)

// event is a callback queued for the shard's dispatcher: a value, not a
// closure, so that queueing one allocates nothing. cost is what a message
// event counts against MaxEventBytes; s is the session it concerns (a
// callback that panics aborts that session, not the process).
type event struct {
	kind    eventKind
	s       *Session
	f       *RecvFlow
	msg     []byte
	err     error
	addr    netip.AddrPort
	barrier *barrier
	cost    int
}

// eventCharge is what one queued message costs beyond its bytes (its
// queue slot), so that floods of tiny messages are bounded too.
const eventCharge = 96

// splitAfter is how long an event callback may run before another
// goroutine takes over the shard's socket: a callback that blocks (a slow
// store, an application bug) then holds up only the events queued behind
// it, while packets, acknowledgements and keepalives go on.
const splitAfter = 50 * time.Millisecond

// queueEvent queues a callback; sh.mu held. Whoever releases the lock
// wakes the reader if needed (see unlockAndWake).
func (sh *shard) queueEvent(ev event) {
	sh.evq = append(sh.evq, ev)
	sh.evBytes += ev.cost
}

// event queues a callback about session s; sh.mu held.
func (sh *shard) event(kind eventKind, s *Session, f *RecvFlow) {
	sh.queueEvent(event{kind: kind, s: s, f: f})
}

// dispatch runs the queued callbacks, in order, unless another goroutine
// of the shard is doing so; it reports whether the calling reader is still
// the shard's reader (false once a newer one took over: the old one then
// returns after what it had to dispatch).
func (sh *shard) dispatch(gen int) bool {
	for {
		sh.mu.Lock()
		if sh.dispatching || len(sh.evq) == 0 {
			alive := sh.gen == gen
			sh.mu.Unlock()
			return alive
		}
		q := sh.evq
		sh.evq, sh.evSpare = sh.evSpare[:0], nil
		sh.dispatching = true
		start := time.Now()
		sh.mu.Unlock()
		sh.armWatchdog(gen, start)
		cost := 0
		for i := range q {
			sh.runEvent(&q[i])
			cost += q[i].cost
			q[i] = event{}
		}
		sh.watchdog.Stop()
		sh.mu.Lock()
		sh.dispatching = false
		if sh.evSpare == nil {
			sh.evSpare = q[:0]
		}
		if cost > 0 {
			sh.eventsDone(cost)
		}
		sh.unlockAndWake()
	}
}

// armWatchdog starts the timer that hands the socket to a new reader if
// the round of callbacks that began at start is still running after
// splitAfter.
func (sh *shard) armWatchdog(gen int, start time.Time) {
	if sh.watchdog == nil {
		sh.watchdog = time.AfterFunc(time.Hour, sh.stuck)
	}
	sh.mu.Lock()
	sh.roundGen, sh.roundStart = gen, start
	sh.mu.Unlock()
	sh.watchdog.Reset(splitAfter)
}

// stuck runs when a round of callbacks overran: if the shard's reader is
// the one still dispatching, a new reader takes the socket over.
func (sh *shard) stuck() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.dispatching || sh.roundGen != sh.gen || time.Since(sh.roundStart) < splitAfter || sh.e.closed.Load() {
		return
	}
	sh.gen++
	// What the callbacks wrote so far goes now, and from here on writes
	// go at once: the stuck reader's iteration no longer ends soon.
	sh.busy = false
	sh.flushDirty(time.Now())
	sh.flushOut()
	sh.e.wg.Add(1)
	go sh.loop(sh.gen)
}

// runEvent runs one callback. A panic in it is the application's bug about
// one session: it is logged with its stack, counted, and that session is
// aborted; the dispatcher and every other session carry on.
func (sh *shard) runEvent(ev *event) {
	h := sh.e.cfg.Events
	defer func() {
		if r := recover(); r != nil {
			sh.e.C.EventPanics.Add(1)
			sh.e.log.Error("event handler panicked; aborting its session", "panic", r, "stack", string(debug.Stack()))
			if ev.s != nil {
				ev.s.Abort()
			}
		}
	}()
	switch ev.kind {
	case evSessionOpened:
		h.SessionOpened(ev.s)
	case evFlowOpened:
		h.FlowOpened(ev.f)
	case evMessage:
		h.Message(ev.f, ev.msg)
	case evFlowClosed:
		h.FlowClosed(ev.f)
	case evSessionClosed:
		h.SessionClosed(ev.s, ev.err)
	case evAddressChanged:
		h.AddressChanged(ev.s, ev.addr)
	case evBarrier:
		ev.barrier.wait(sh.e.done)
	}
}

// barrier parks every shard's dispatcher for Run.
type barrier struct {
	arrived chan struct{}
	release chan struct{}
}

func (b *barrier) wait(done <-chan struct{}) {
	b.arrived <- struct{}{}
	select {
	case <-b.release:
	case <-done:
	}
}

// Run runs fn while no event callback runs (every shard's dispatcher waits
// at that point of its queue, after the events queued before), and
// returns once it ran, or at once if the engine is closed or not in event
// mode: code outside the callbacks uses it to touch the state that only
// the callbacks otherwise touch, without locks. fn must not call Run, and
// callbacks must not call Run.
func (e *Engine) Run(fn func()) {
	if e.closed.Load() || e.cfg.Events == nil {
		return
	}
	e.runMu.Lock()
	defer e.runMu.Unlock()
	b := &barrier{arrived: make(chan struct{}, len(e.shards)), release: make(chan struct{})}
	defer close(b.release)
	for _, sh := range e.shards {
		sh.mu.Lock()
		if e.closed.Load() {
			sh.mu.Unlock()
			return
		}
		sh.queueEvent(event{kind: evBarrier, barrier: b})
		sh.unlockAndWake()
	}
	for range e.shards {
		select {
		case <-b.arrived:
		case <-e.done:
			return
		}
	}
	fn()
}

// eventsDone releases the charge of dispatched message events and, once
// the queue is down to half its bound, lets stalled sessions hand out
// their messages again (the caller flushes, which drains them and tells
// their senders that the windows opened); sh.mu held.
func (sh *shard) eventsDone(cost int) {
	sh.evBytes -= cost
	if sh.evBytes > sh.e.cfg.MaxEventBytes/2 || len(sh.evStalled) == 0 {
		return
	}
	for _, s := range sh.evStalled {
		s.stalled = false
		if !s.closed {
			sh.markDirty(s)
		}
	}
	clear(sh.evStalled)
	sh.evStalled = sh.evStalled[:0]
}

// sessionGone tells an event-driven application that a session has left
// the open state: closed, or closing (an orderly close lingers for up to
// 19 s to acknowledge the far end's retransmitted close requests, but
// nothing more will be delivered, so the application forgets the peer
// now). sh.mu held.
func (sh *shard) sessionGone(s *Session) {
	s.gone = true
	s.isOpen.Store(false)
	if sh.e.cfg.Events == nil {
		return
	}
	// What the session still holds goes out before its end, whatever the
	// queue's bound: it is bounded by the session's receive buffer.
	for _, rf := range s.drain {
		sh.drainFlow(rf, true)
	}
	s.drain = nil
	sh.queueEvent(event{kind: evSessionClosed, s: s, err: s.core.Err()})
}

// drainFlow hands a flow's complete messages (and its end) to the
// dispatcher. Unless force is set it stops when the dispatcher's queue is
// full and reports false: the flow keeps its place in s.drain. sh.mu held.
func (sh *shard) drainFlow(rf *RecvFlow, force bool) bool {
	if !rf.openedSent {
		rf.openedSent = true
		sh.event(evFlowOpened, rf.s, rf)
	}
	for {
		if !force && sh.evBytes >= sh.e.cfg.MaxEventBytes && rf.core.Pending() > 0 {
			return false
		}
		msg, ok, eof := rf.core.Read()
		if ok {
			sh.queueEvent(event{kind: evMessage, f: rf, msg: msg, cost: len(msg) + eventCharge, s: rf.s})
			continue
		}
		if (eof || rf.s.core.IsClosed()) && !rf.closedSent {
			rf.closedSent = true
			sh.event(evFlowClosed, rf.s, rf)
		}
		rf.queued = false
		return true
	}
}
