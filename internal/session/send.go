package session

import (
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Message is one message written to a send flow, with its optional
// deadline and delivery receipt.
type Message struct {
	data      []byte
	off       int // bytes already cut into fragments
	deadline  time.Time
	fragsOut  int // fragments created and not yet acked
	abandoned bool
	settled   bool
	done      func(delivered bool)
}

func (m *Message) fullyCut() bool { return m.off >= len(m.data) }

func (m *Message) settle(delivered bool) {
	if m.settled {
		return
	}
	m.settled = true
	if m.done != nil {
		m.done(delivered)
	}
}

type sfrag struct {
	charge   int // bytes counted in flight for the current transmission
	seq      uint64
	flags    byte // fragment bits and FIN; ABN is added when abandoned
	data     []byte
	msg      *Message
	inflight bool
	acked    bool
	needRtx  bool
	tsn      uint64
	naks     int
}

func (f *sfrag) size() int { return len(f.data) + 8 }

// minFragment is the smallest fragment cut from a longer message: a
// nearly closed window waits instead of sending slivers.
const minFragment = 256

// SendFlow is the sending end of a flow we opened.
type SendFlow struct {
	ID           uint64
	Metadata     []byte
	Assoc        uint64 // the far end's flow (one we receive) this flow answers
	HasAssoc     bool
	TimeCritical bool // set TC on packets carrying this flow's data

	s         *Session
	options   []byte // encoded option list, sent until the first ack
	nextSeq   uint64
	pending   []*Message // messages with bytes not yet cut into fragments
	sent      []*sfrag   // fragments sent and not yet acked, in sequence order
	gotAck    bool
	farWindow int // bytes
	flight    int // this flow's bytes in flight
	rtx       int // fragments in sent waiting for retransmission
	queued    int // bytes written and not yet settled
	closing   bool
	finSent   bool
	complete  bool
	rejected  bool
	excCode   uint64
	probeAt   time.Time
	probeIvl  time.Duration
}

// initialFarWindow is what a sender assumes before the first ack (rtmfp-cpp).
const initialFarWindow = 65536

// Write queues a message. deadline (zero for none) abandons the message if
// it is not fully acknowledged by then; done, if not nil, is called once
// with the outcome, under the caller's lock.
func (f *SendFlow) Write(data []byte, deadline time.Time, done func(delivered bool)) error {
	if f.closing || f.rejected || f.s.state != stateOpen {
		return ErrFlowClosed
	}
	m := &Message{data: data, deadline: deadline, done: done}
	f.pending = append(f.pending, m)
	if !deadline.IsZero() {
		f.s.deadlines = append(f.s.deadlines, &dlEntry{m: m, f: f})
	}
	f.queued += len(data)
	f.s.wake()
	return nil
}

// Buffered is the number of bytes written and not yet acknowledged or
// abandoned: writers use it for backpressure.
func (f *SendFlow) Buffered() int { return f.queued }

// Close finishes the flow after everything written so far: the last
// fragment carries FIN.
func (f *SendFlow) Close() {
	if f.closing {
		return
	}
	f.closing = true
	f.s.wake()
}

// Complete reports that FIN and everything before it was acknowledged.
func (f *SendFlow) Complete() bool { return f.complete }

// Rejected reports a flow exception from the receiver, and its code.
func (f *SendFlow) Rejected() (bool, uint64) { return f.rejected, f.excCode }

// Session returns the flow's session.
func (f *SendFlow) Session() *Session { return f.s }

// fsn is the forward sequence number: every sequence number at or below it
// has been acknowledged (or abandoned and acknowledged as such).
func (f *SendFlow) fsn() uint64 {
	if len(f.sent) > 0 {
		return f.sent[0].seq - 1
	}
	return f.nextSeq - 1
}

// hasWork reports whether the flow has something to transmit.
func (f *SendFlow) hasWork() bool {
	return f.rtx > 0 || len(f.pending) > 0 || f.closing && !f.finSent
}

// windowRoom is how many data bytes the far window admits for a new
// fragment; with nothing in flight one whole fragment may always go, so a
// window smaller than a fragment cannot stall the flow.
func (f *SendFlow) windowRoom() int {
	if f.farWindow <= 0 {
		return -1
	}
	if f.flight == 0 {
		return 1 << 30
	}
	return f.farWindow - f.flight - 8
}

// canCut reports whether the window admits the next fragment of a message
// with remaining bytes (the FIN fragment has none). hasSendableData and
// nextFragment share this rule, so "sendable" always sends something.
func (f *SendFlow) canCut(remaining int) bool {
	room := f.windowRoom()
	return room >= min(remaining, minFragment)
}

// abandon gives up on a message: its unsent bytes are dropped and its sent
// fragments are retransmitted, if they need to be, as empty ABN fragments
// so that the receiver learns at once.
func (f *SendFlow) abandon(m *Message) {
	if m.abandoned {
		return
	}
	m.abandoned = true
	f.queued -= len(m.data) - m.off
	m.off = len(m.data)
	for _, fr := range f.sent {
		if fr.msg == m && !fr.acked {
			fr.flags |= wire.UDAbandon
			f.queued -= len(fr.data)
			fr.data = nil
		}
	}
	if m.fragsOut == 0 {
		m.settle(false)
	}
}

// onAck applies an acknowledgement; it returns the bytes newly acked and the
// highest TSN among newly acked fragments.
func (f *SendFlow) onAck(a wire.Ack) (acked int, maxTSN uint64) {
	f.gotAck = true
	f.options = nil
	if a.Window > 1<<30 {
		a.Window = 1 << 30
	}
	f.farWindow = int(a.Window) * 1024
	if f.farWindow > 0 {
		f.probeAt, f.probeIvl = time.Time{}, 0
	}
	if len(f.sent) == 0 {
		return 0, 0
	}
	base := f.sent[0].seq
	last := base + uint64(len(f.sent)) - 1
	mark := func(from, to uint64) {
		if to < base || from > last {
			return
		}
		from = max(from, base)
		to = min(to, last)
		for s := from; s <= to; s++ {
			fr := f.sent[s-base]
			if fr.acked {
				continue
			}
			fr.acked = true
			if fr.inflight {
				fr.inflight = false
				f.flight -= fr.charge
				f.s.outstanding -= fr.charge
				acked += fr.charge
				maxTSN = max(maxTSN, fr.tsn)
			}
			if fr.needRtx {
				fr.needRtx = false
				f.rtx--
			}
			if fr.flags&wire.UDAbandon == 0 {
				f.queued -= len(fr.data)
			}
			if m := fr.msg; m != nil {
				m.fragsOut--
				if m.fragsOut == 0 && m.fullyCut() {
					m.settle(!m.abandoned)
				}
			}
		}
	}
	mark(0, a.Cum)
	for _, r := range a.Ranges {
		mark(r.Start, r.End)
	}
	i := 0
	for i < len(f.sent) && f.sent[i].acked {
		f.sent[i] = nil
		i++
	}
	f.sent = f.sent[i:]
	if len(f.sent) == 0 {
		f.sent = nil
	}
	f.checkComplete()
	return acked, maxTSN
}

func (f *SendFlow) checkComplete() {
	if f.finSent && len(f.sent) == 0 && !f.complete {
		f.complete = true
		f.s.sendFlowChanged(f)
	}
}

// onException handles a flow exception report: the receiver refuses the
// flow. Queued messages are abandoned and the flow is closed with FIN.
func (f *SendFlow) onException(code uint64) {
	if f.rejected {
		return
	}
	f.rejected, f.excCode = true, code
	for _, m := range f.pending {
		f.abandon(m)
	}
	f.pending = nil
	for _, fr := range f.sent {
		if fr.msg != nil {
			f.abandon(fr.msg)
		}
	}
	f.closing = true
	f.s.sendFlowChanged(f)
	f.s.wake()
}

// teardown settles everything when the session closes.
func (f *SendFlow) teardown() {
	for _, m := range f.pending {
		m.settle(false)
	}
	for _, fr := range f.sent {
		if fr.msg != nil {
			fr.msg.settle(false)
		}
	}
	f.pending, f.sent = nil, nil
	f.closing, f.rejected = true, true
	f.queued, f.flight, f.rtx = 0, 0, 0
}

// nextFragment returns the fragment to transmit next, cutting a new one of
// at most room data bytes from the pending messages if nothing waits for
// retransmission. It returns nil if the flow has nothing it may send.
func (f *SendFlow) nextFragment(room int) *sfrag {
	if f.rtx > 0 {
		for _, fr := range f.sent {
			if fr.needRtx {
				return fr
			}
		}
	}
	if len(f.pending) == 0 {
		if f.closing && !f.finSent {
			// An empty final fragment closes the flow. ABN keeps any
			// receiver from taking it for an empty message (Cumulus does
			// the same).
			if !f.canCut(0) {
				return nil
			}
			fr := &sfrag{seq: f.nextSeq, flags: wire.UDFragWhole | wire.UDAbandon | wire.UDFinal}
			f.nextSeq++
			f.finSent = true
			f.sent = append(f.sent, fr)
			return fr
		}
		return nil
	}
	m := f.pending[0]
	remaining := len(m.data) - m.off
	if !f.canCut(remaining) {
		return nil
	}
	n := min(remaining, room, f.windowRoom())
	if n <= 0 && remaining > 0 {
		return nil
	}
	var flags byte
	first, last := m.off == 0, m.off+n == len(m.data)
	switch {
	case first && last:
		flags = wire.UDFragWhole
	case first:
		flags = wire.UDFragFirst
	case last:
		flags = wire.UDFragLast
	default:
		flags = wire.UDFragMiddle
	}
	fr := &sfrag{seq: f.nextSeq, flags: flags, data: m.data[m.off : m.off+n : m.off+n], msg: m}
	f.nextSeq++
	m.off += n
	m.fragsOut++
	if last {
		f.pending[0] = nil
		f.pending = f.pending[1:]
		if len(f.pending) == 0 {
			f.pending = nil
		}
		if len(f.pending) == 0 && f.closing {
			fr.flags |= wire.UDFinal
			f.finSent = true
		}
	}
	f.sent = append(f.sent, fr)
	return fr
}

// abandonMsg abandons m if it belongs to this flow's queue.
func (f *SendFlow) abandonMsg(m *Message) {
	for i, p := range f.pending {
		if p == m {
			f.pending = append(f.pending[:i], f.pending[i+1:]...)
			break
		}
	}
	f.abandon(m)
}
