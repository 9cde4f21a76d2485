package engine

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/session"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Session is a goroutine-safe handle on an open session.
type Session struct {
	e         *Engine
	sh        *shard // owns the session: its lock guards core and what follows
	core      *session.Session
	initiator bool
	farCert   [32]byte // SHA-256 of the far certificate as received
	peerID    [32]byte
	nearNonce []byte
	farNonce  []byte

	// responder bookkeeping for retransmitted IIKeyings
	isid     uint32
	skicHash [32]byte
	addrKey  netip.AddrPort // our key in e.byAddr (responder sessions)
	inByAddr bool
	rikeying []byte // kept until the initiator's first session packet

	recvQ   []*RecvFlow
	drain   []*RecvFlow // event mode: flows with messages to hand out
	stalled bool        // event mode: in e.evStalled
	writers int         // goroutines waiting for send buffer space

	notify        chan struct{} // created when someone waits (event mode: never)
	notifyPending bool
	done          chan struct{} // created on demand by Done
	closed        bool
	gone          bool // event mode: SessionClosed queued

	dirty    bool
	timerAt  time.Time
	timerVer uint64

	peerPrev, peerNext *Session    // other sessions with the same peer ID (e.gmu)
	isOpen             atomic.Bool // for other shards, which may not read core

	// CloseAfter's state: close once closeFlow is done or at closeBy,
	// abort at abortBy.
	closeFlow        *SendFlow
	closeBy, abortBy time.Time
	abortAfter       time.Duration

	value atomic.Value // the application's (the server keeps its client state here)
}

// SetValue stores application state on the session.
func (s *Session) SetValue(v any) { s.value.Store(v) }

// Value returns what SetValue stored, or nil.
func (s *Session) Value() any { return s.value.Load() }

// handler adapts Session to session.Handler; every method runs with the
// shard's lock held.
type handler Session

func (h *handler) s() *Session { return (*Session)(h) }

func (h *handler) RecvFlow(f *session.RecvFlow) {
	s := h.s()
	if s.e.cfg.ArrivalOrder != nil && s.e.cfg.ArrivalOrder(f.Metadata) {
		f.ArrivalOrder = true
	}
	rf := &RecvFlow{s: s, core: f}
	f.Value = rf
	if s.e.cfg.Events != nil {
		// FlowOpened goes out when the flow is drained, behind the
		// messages of the session's flows that were readable before
		// (a batch of datagrams is drained once at its end: queued now,
		// a client's next flow would open before its previous one's
		// last message and end were delivered).
		rf.queued = true
		s.drain = append(s.drain, rf)
		s.sh.markDirty(s)
		return
	}
	s.recvQ = append(s.recvQ, rf)
	s.notifyPending = true
}

func (h *handler) Readable(f *session.RecvFlow) {
	s := h.s()
	if s.e.cfg.Events != nil {
		if rf, _ := f.Value.(*RecvFlow); rf != nil && !rf.queued {
			rf.queued = true
			s.drain = append(s.drain, rf)
			s.sh.markDirty(s)
		}
		return
	}
	s.notifyPending = true
}
func (h *handler) SendFlowChanged(*session.SendFlow) { h.s().notifyPending = true }
func (h *handler) Wake(*session.Session)             { h.s().sh.markDirty(h.s()) }

func (h *handler) FIHello(_ *session.Session, c wire.FIHello) {
	s := h.s()
	epd, err := handshake.ParseEPD(c.EPD)
	if err != nil || !epd.Selects(s.e.id.Parsed) || !c.Reply.AddrPort.IsValid() {
		return
	}
	// Answer as if the IHello had come from the reply address: the RHello
	// opens our NAT towards the initiator.
	to := netip.AddrPortFrom(c.Reply.AddrPort.Addr().Unmap(), c.Reply.AddrPort.Port())
	s.sh.sendRHello(time.Now(), to, c.Tag)
}

func (h *handler) AddressChanged(_ *session.Session, addr netip.AddrPort) {
	s := h.s()
	if s.inByAddr {
		if s.sh.byAddr[s.addrKey] == s {
			delete(s.sh.byAddr, s.addrKey)
		}
		if s.sh.byAddr[addr] == nil {
			s.sh.byAddr[addr] = s
		}
		s.addrKey = addr
	}
	s.notifyPending = true
	if s.e.cfg.Events != nil {
		s.sh.queueEvent(event{kind: evAddressChanged, s: s, addr: addr})
	}
}

func (h *handler) Closed(*session.Session, error) { h.s().sh.sessionClosed(h.s()) }

func (s *Session) broadcast() {
	if s.notify != nil {
		close(s.notify)
		s.notify = nil
	}
}

// notifyCh returns the channel the next broadcast closes; the shard's lock
// held.
func (s *Session) notifyCh() chan struct{} {
	if s.notify == nil {
		s.notify = make(chan struct{})
	}
	return s.notify
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// wait blocks until the session's state changes, ctx ends or the session
// closes. ch must have been read under the shard's lock.
func (s *Session) wait(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PeerID is the far end's fingerprint (SHA-256 of its certificate).
func (s *Session) PeerID() [32]byte { return s.peerID }

// NearNonce and FarNonce are the session nonces (RFC 7425 §4.6.3).
func (s *Session) NearNonce() []byte { return s.nearNonce }

// FarNonce is the far end's session nonce.
func (s *Session) FarNonce() []byte { return s.farNonce }

// Initiator reports whether we opened the session.
func (s *Session) Initiator() bool { return s.initiator }

// Engine returns the session's engine.
func (s *Session) Engine() *Engine { return s.e }

// RemoteAddr is the far end's current address.
func (s *Session) RemoteAddr() netip.AddrPort {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	return s.core.Dest()
}

// Done is closed when the session closes.
func (s *Session) Done() <-chan struct{} {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	if s.closed {
		return closedChan
	}
	if s.done == nil {
		s.done = make(chan struct{})
	}
	return s.done
}

// Closing reports that the session has left the open state (it may still
// be lingering to acknowledge the far end's close requests).
func (s *Session) Closing() bool {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	return !s.core.IsOpen()
}

// Err is why the session closed (nil while open).
func (s *Session) Err() error {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	if !s.core.IsClosed() {
		return nil
	}
	return s.core.Err()
}

// Stats returns the session's counters.
func (s *Session) Stats() session.Stats {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	return s.core.Stats
}

// SRTT is the smoothed round-trip time.
func (s *Session) SRTT() time.Duration {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	return s.core.SRTT()
}

// SetKeepalive changes the session's keepalive period and dead-peer
// timeout (0 keeps the current one).
func (s *Session) SetKeepalive(keepalive, deadAfter time.Duration) {
	s.sh.do(func(now time.Time) {
		s.core.SetKeepalive(keepalive, deadAfter)
		s.sh.schedule(s, now)
	})
}

// OpenFlow opens a send flow. assoc, if not nil, makes it the return flow
// of a flow we receive; optional options (types 0x2000 and up) go with
// the metadata.
func (s *Session) OpenFlow(metadata []byte, assoc *RecvFlow, optional ...wire.Option) (*SendFlow, error) {
	s.sh.mu.Lock()
	defer s.sh.unlockAndWake()
	var a *session.RecvFlow
	if assoc != nil {
		a = assoc.core
	}
	f, err := s.core.OpenFlow(append([]byte(nil), metadata...), a, optional...)
	if err != nil {
		return nil, err
	}
	return &SendFlow{s: s, core: f}, nil
}

// AcceptFlow waits for the next flow the far end opens.
func (s *Session) AcceptFlow(ctx context.Context) (*RecvFlow, error) {
	for {
		s.sh.mu.Lock()
		if len(s.recvQ) > 0 {
			f := s.recvQ[0]
			s.recvQ = s.recvQ[1:]
			s.sh.mu.Unlock()
			return f, nil
		}
		if s.core.IsClosed() {
			err := s.core.Err()
			s.sh.mu.Unlock()
			return nil, err
		}
		ch := s.notifyCh()
		s.sh.mu.Unlock()
		if err := s.wait(ctx, ch); err != nil {
			return nil, err
		}
	}
}

// ForwardIHello sends a Forwarded IHello to the far end (introducing an
// initiator at reply to it), in a packet of its own, at once.
func (s *Session) ForwardIHello(epd []byte, reply wire.Address, tag []byte) {
	sh := s.sh
	sh.mu.Lock()
	if sh.e.closed.Load() {
		sh.mu.Unlock()
		return
	}
	sh.fih = wire.FIHello{EPD: epd, Reply: reply, Tag: tag}.Append(sh.fih[:0])
	now := time.Now()
	if s.core.SendChunk(now, sh.sendTo, sh.fih) {
		s.e.C.FIHellosSent.Add(1)
		sh.schedule(s, now)
	}
	sh.unlockAndWake()
}

// Close closes the session in an orderly way and waits until the far end
// acknowledges, the close gives up, or ctx ends.
func (s *Session) Close(ctx context.Context) error {
	s.sh.do(func(now time.Time) { s.core.Close(now) })
	select {
	case <-s.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseAfter closes the session in an orderly way once f (if not nil)
// has had everything written to it acknowledged, or was refused, or after
// wait at the latest, and aborts it if the far end has not acknowledged
// the close abortAfter later. It returns at once: the engine's timers do
// the waiting, no goroutine does.
func (s *Session) CloseAfter(f *SendFlow, wait, abortAfter time.Duration) {
	s.sh.do(func(now time.Time) {
		if !s.core.IsOpen() || !s.closeBy.IsZero() || !s.abortBy.IsZero() {
			return
		}
		s.closeFlow, s.closeBy, s.abortAfter = f, now.Add(wait), abortAfter
		s.sh.markDirty(s)
	})
}

// Abort closes the session at once.
func (s *Session) Abort() {
	s.sh.do(func(now time.Time) { s.core.Abort(now, s.sh.sendTo) })
}

// SendFlow is a goroutine-safe handle on a send flow.
type SendFlow struct {
	s    *Session
	core *session.SendFlow
}

// MaxBuffered is how many unacknowledged bytes Write lets a flow hold
// before it blocks.
const MaxBuffered = 1 << 20

// ID is the flow ID.
func (f *SendFlow) ID() uint64 { return f.core.ID }

// Session is the flow's session.
func (f *SendFlow) Session() *Session { return f.s }

// SetTimeCritical marks the flow's data as time critical (TC flag).
func (f *SendFlow) SetTimeCritical(tc bool) { f.s.sh.do(func(time.Time) { f.core.TimeCritical = tc }) }

// Receipt reports the fate of one message.
type Receipt struct {
	done      chan struct{}
	delivered bool
}

// Done is closed once the message is acknowledged or abandoned.
func (r *Receipt) Done() <-chan struct{} { return r.done }

// Delivered reports, after Done, whether the far end acknowledged every
// fragment.
func (r *Receipt) Delivered() bool {
	<-r.done
	return r.delivered
}

// Write queues a message, blocking while the flow holds MaxBuffered bytes
// not yet acknowledged.
func (f *SendFlow) Write(msg []byte) error {
	_, err := f.WriteMessage(context.Background(), msg, time.Time{})
	return err
}

// WriteMessage queues a message with an optional deadline (after which it
// is abandoned) and returns its delivery receipt. It blocks for buffer
// space until ctx ends.
func (f *SendFlow) WriteMessage(ctx context.Context, msg []byte, deadline time.Time) (*Receipt, error) {
	r := &Receipt{done: make(chan struct{})}
	data := append([]byte(nil), msg...)
	sh := f.s.sh
	for {
		sh.mu.Lock()
		if f.core.Buffered() < MaxBuffered || f.core.Buffered() == 0 {
			err := f.core.Write(data, deadline, func(ok bool) {
				r.delivered = ok
				close(r.done)
			})
			sh.unlockAndWake()
			return r, err
		}
		if f.s.core.IsClosed() {
			sh.mu.Unlock()
			return nil, session.ErrSessionClosed
		}
		f.s.writers++
		ch := f.s.notifyCh()
		sh.mu.Unlock()
		err := f.s.wait(ctx, ch)
		sh.mu.Lock()
		f.s.writers--
		sh.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// ErrBufferFull is TryWrite's answer when the flow already holds
// MaxBuffered unacknowledged bytes (TryWriteWithin's: its limit).
var ErrBufferFull = errors.New("engine: send buffer full")

// TryWrite queues a message without ever blocking: event handlers use it,
// since a far end that stops acknowledging must not stall the dispatcher.
func (f *SendFlow) TryWrite(msg []byte) error { return f.TryWriteBy(msg, time.Time{}) }

// TryWriteBy is TryWrite with a deadline after which the message is
// abandoned (live media that is late is worthless).
func (f *SendFlow) TryWriteBy(msg []byte, deadline time.Time) error {
	return f.tryWrite(msg, deadline, func(buffered int) bool { return buffered >= MaxBuffered })
}

// TryWriteWithin is TryWrite with a tighter bound: ErrBufferFull when the
// message would take what the flow holds unacknowledged past limit (a
// message is always let into an empty flow). For flows whose messages may
// be lost when the far end does not keep up, to bound what it can make us
// hold.
func (f *SendFlow) TryWriteWithin(msg []byte, limit int) error {
	return f.tryWrite(msg, time.Time{}, func(buffered int) bool {
		return buffered >= MaxBuffered || buffered > 0 && buffered+len(msg) > limit
	})
}

func (f *SendFlow) tryWrite(msg []byte, deadline time.Time, full func(buffered int) bool) error {
	sh := f.s.sh
	sh.mu.Lock()
	if full(f.core.Buffered()) {
		sh.mu.Unlock()
		return ErrBufferFull
	}
	err := f.core.Write(append([]byte(nil), msg...), deadline, nil)
	sh.unlockAndWake()
	return err
}

// Close finishes the flow after what was written.
func (f *SendFlow) Close() { f.s.sh.do(func(time.Time) { f.core.Close() }) }

// Rejected reports whether the receiver refused the flow, and the code.
func (f *SendFlow) Rejected() (bool, uint64) {
	f.s.sh.mu.Lock()
	defer f.s.sh.mu.Unlock()
	return f.core.Rejected()
}

// Complete reports whether everything through FIN was acknowledged.
func (f *SendFlow) Complete() bool {
	f.s.sh.mu.Lock()
	defer f.s.sh.mu.Unlock()
	return f.core.Complete()
}

// WaitComplete waits until the flow completes, is rejected, or the session
// closes.
func (f *SendFlow) WaitComplete(ctx context.Context) error {
	for {
		f.s.sh.mu.Lock()
		// A flow the receiver refused has failed even if its FIN exchange
		// then completed.
		if rej, _ := f.core.Rejected(); rej {
			f.s.sh.mu.Unlock()
			return session.ErrFlowClosed
		}
		if f.core.Complete() {
			f.s.sh.mu.Unlock()
			return nil
		}
		if f.s.core.IsClosed() {
			f.s.sh.mu.Unlock()
			return session.ErrFlowClosed
		}
		ch := f.s.notifyCh()
		f.s.sh.mu.Unlock()
		if err := f.s.wait(ctx, ch); err != nil {
			return err
		}
	}
}

// RecvFlow is a goroutine-safe handle on a flow the far end opened.
type RecvFlow struct {
	s          *Session
	core       *session.RecvFlow
	queued     bool // event mode: in s.drain
	openedSent bool // event mode: FlowOpened delivered
	closedSent bool // event mode: FlowClosed delivered
	// Value is free for the application.
	Value any
}

// ID is the flow ID (chosen by the sender).
func (f *RecvFlow) ID() uint64 { return f.core.ID }

// Metadata is the flow's user metadata.
func (f *RecvFlow) Metadata() []byte { return f.core.Metadata }

// Option returns the value of the flow's optional option typ, if the
// far end sent one.
func (f *RecvFlow) Option(typ uint64) ([]byte, bool) {
	for _, o := range f.core.Optional {
		if o.Type == typ {
			return o.Value, true
		}
	}
	return nil, false
}

// Assoc returns the ID of our send flow this flow answers, if any.
func (f *RecvFlow) Assoc() (uint64, bool) { return f.core.Assoc, f.core.HasAssoc }

// Session is the flow's session.
func (f *RecvFlow) Session() *Session { return f.s }

// Read returns the next message; io.EOF once the sender finished the flow
// (or it was rejected, or the session closed) and every message was read.
func (f *RecvFlow) Read(ctx context.Context) ([]byte, error) {
	sh := f.s.sh
	for {
		sh.mu.Lock()
		msg, ok, eof := f.core.Read()
		if ok {
			sh.unlockAndWake()
			return msg, nil
		}
		if eof || f.s.core.IsClosed() {
			sh.mu.Unlock()
			return nil, io.EOF
		}
		ch := f.s.notifyCh()
		sh.mu.Unlock()
		if err := f.s.wait(ctx, ch); err != nil {
			return nil, err
		}
	}
}

// Reject refuses the flow with an exception code.
func (f *RecvFlow) Reject(code uint64) { f.s.sh.do(func(time.Time) { f.core.Reject(code) }) }
