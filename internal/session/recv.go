package session

import (
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// RecvFlow is the receiving end of a flow opened by the far side.
type RecvFlow struct {
	ID       uint64
	Metadata []byte
	// Assoc is the far end's return-flow association: the ID of one of our
	// send flows that this flow answers.
	Assoc    uint64
	HasAssoc bool
	// Optional holds the flow's optional options (types 0x2000 and up,
	// which a receiver that does not know them ignores): at most
	// maxOptional, each at most maxOptionalValue bytes.
	Optional []wire.Option
	// ArrivalOrder delivers each message as soon as it is complete instead
	// of in sending order (set at acceptance from the flow's metadata).
	ArrivalOrder bool
	// Value is free for the layer above (the engine keeps its handle here).
	Value any

	s        *Session
	recv     rangeSet
	fsn      uint64
	frags    map[uint64]rfrag
	next     uint64 // next sequence number for in-order reassembly
	partial  []byte
	inMsg    bool
	pcharge  int // buffer charge of partial
	ready    [][]byte
	one      [1][]byte // ready's backing array while it holds one message
	buffered int       // bytes charged against the receive buffer
	finSeq   uint64
	hasFin   bool
	finished bool // all sequence numbers through FIN received
	rejected bool
	excCode  uint64
	// ack bookkeeping
	ackNow     bool
	ackPending bool
	ackDue     time.Time
	pktsUnack  int
	lastWindow uint64
	doneAt     time.Time // when the flow finished; forgotten after the linger
}

type rfrag struct {
	flags byte
	data  []byte
}

// fragOverhead is charged to the receive buffer per buffered fragment or
// message so that many tiny ones cannot use more memory than the window
// says.
const fragOverhead = 64

// Read returns the next complete message, or ok=false if none is ready.
// eof reports that the flow has finished (or was rejected) and every
// message has been read.
func (f *RecvFlow) Read() (msg []byte, ok, eof bool) {
	if len(f.ready) > 0 {
		msg = f.ready[0]
		f.ready[0] = nil
		f.ready = f.ready[1:]
		if len(f.ready) == 0 {
			// Back to the flow's own slot: an idle flow holds no other
			// backing array, and one message at a time needs none.
			f.ready = f.one[:0]
		}
		f.addBuf(-(len(msg) + fragOverhead))
		f.windowOpened()
		return msg, true, false
	}
	return nil, false, f.finished || f.rejected
}

// Pending is the number of complete messages waiting to be read.
func (f *RecvFlow) Pending() int { return len(f.ready) }

// Finished reports that the sender closed the flow (FIN received and every
// sequence number before it accounted for).
func (f *RecvFlow) Finished() bool { return f.finished }

// Rejected reports whether we refused the flow.
func (f *RecvFlow) Rejected() bool { return f.rejected }

// Session returns the flow's session.
func (f *RecvFlow) Session() *Session { return f.s }

// Reject refuses the flow: a flow exception report with code goes to the
// sender (repeated with every ack) and buffered messages are dropped.
func (f *RecvFlow) Reject(code uint64) {
	if f.rejected {
		return
	}
	f.rejected, f.excCode = true, code
	f.ready, f.frags, f.partial, f.one[0] = nil, nil, nil, nil
	f.addBuf(-f.buffered)
	f.pcharge, f.inMsg = 0, false
	f.ackNow, f.ackPending = true, true
	f.s.readable(f)
	f.s.wake()
}

// windowOpened schedules an ack when reading frees enough buffer that the
// advertised window grows noticeably (the sender may be stalled on it).
func (f *RecvFlow) windowOpened() {
	if f.finished || f.rejected {
		return
	}
	w := f.window()
	if f.lastWindow < 2 && w >= 2 || w >= f.lastWindow+uint64(f.s.cfg.RecvBuffer/1024/4+1) {
		f.ackNow, f.ackPending = true, true
		f.s.wake()
	}
}

// window is the advertised receive window in 1024-byte blocks. It rounds
// down and counts each block's fragment overhead, so that whatever the
// sender sends within it is accepted (rounding up would invite fragments
// that get dropped and retransmitted until the reader catches up).
//
// It never advertises zero: Cumulus fails its writer and MonaServer and
// librtmfp kill the session on a zero window, so, as rtmfp-cpp does, an
// open flow advertises at least one block (what does not fit is dropped
// unrecorded and retransmitted later), and a rejected flow, which buffers
// nothing, advertises the whole buffer.
func (f *RecvFlow) window() uint64 {
	if f.rejected {
		return uint64(f.s.cfg.RecvBuffer / 1024)
	}
	free := min(f.s.cfg.RecvBuffer-f.buffered, f.s.cfg.SessionRecvBuffer-f.s.recvBuffered)
	return max(uint64(max(free, 0)/(1024+fragOverhead)), 1)
}

// onData processes one user-data chunk. It returns false if the chunk was
// dropped without being recorded (so it must not be acknowledged).
func (f *RecvFlow) onData(now time.Time, c wire.UserData) bool {
	seq := c.Seq
	if seq >= maxSeq {
		return false // no sender gets near this; +1 arithmetic must not wrap
	}
	fsn := c.Seq - c.FSNOffset
	if !f.recv.canAdd(seq, seq) {
		return false
	}
	dup := f.recv.contains(seq)
	before := len(f.recv.r)
	direct := false
	// An empty whole fragment with FIN is how rtmfp-cpp closes a flow whose
	// last message already went: a close marker, not a message.
	closeMarker := len(c.Data) == 0 && c.Flags&(wire.UDFragMask|wire.UDFinal) == wire.UDFinal
	if !dup && !f.rejected && c.Flags&wire.UDAbandon == 0 && !closeMarker && seq >= f.next {
		// Buffer the fragment within the receive buffer; beyond it the
		// chunk is dropped unrecorded and will come again.
		need := len(c.Data) + fragOverhead
		if f.buffered+need > f.s.cfg.RecvBuffer || f.s.recvBuffered+need > f.s.cfg.SessionRecvBuffer {
			f.ackNow, f.ackPending = true, true
			return false
		}
		if seq == f.next && len(f.frags) == 0 && !f.ArrivalOrder && c.Flags&wire.UDFragMask == wire.UDFragWhole && f.recv.cum()+1 == seq {
			// The next message, whole, with nothing before it missing (the
			// common case): delivered at once, without going through the
			// fragment map (a map made and dropped per message).
			direct = true
		} else {
			if f.frags == nil {
				f.frags = map[uint64]rfrag{}
			}
			f.frags[seq] = rfrag{flags: c.Flags, data: append([]byte(nil), c.Data...)}
			f.addBuf(need)
		}
	}
	f.recv.add(seq, seq)
	if fsn > f.fsn {
		f.fsn = fsn
		f.recv.add(0, fsn)
	}
	if c.Flags&wire.UDFinal != 0 && !f.hasFin {
		f.hasFin, f.finSeq = true, seq
		f.ackNow = true
	}
	if direct {
		f.next = seq + 1
		f.dropPartial()
		f.push(append([]byte(nil), c.Data...))
	}
	if !dup && f.ArrivalOrder && !f.rejected {
		f.deliverArrived(seq)
	}
	f.reassemble()
	if f.hasFin && !f.finished && len(f.recv.r) == 1 && f.recv.cum() >= f.finSeq {
		f.finished = true
		f.doneAt = now
		f.ackNow = true
		f.dropPartial()
		for _, fr := range f.frags {
			f.addBuf(-(len(fr.data) + fragOverhead))
		}
		f.frags = nil
		f.s.readable(f)
	}
	// Ack urgency (RFC 7016 §3.6.3.2 as rtmfp-cpp reads it).
	if dup || c.Flags&wire.UDAbandon != 0 || before != 1 || len(f.recv.r) != before || f.lastWindow < 2 || f.rejected {
		f.ackNow = true
	}
	f.ackPending = true
	return true
}

// deliverArrived completes the message containing seq out of order if all
// its fragments are present.
func (f *RecvFlow) deliverArrived(seq uint64) {
	fr, ok := f.frags[seq]
	if !ok {
		return
	}
	first := seq
	for k := fr.flags & wire.UDFragMask; k == wire.UDFragMiddle || k == wire.UDFragLast; k = fr.flags & wire.UDFragMask {
		p, ok := f.frags[first-1]
		if !ok || first-1 < f.next {
			return
		}
		first--
		fr = p
	}
	last := seq
	fr = f.frags[seq]
	for k := fr.flags & wire.UDFragMask; k == wire.UDFragFirst || k == wire.UDFragMiddle; k = fr.flags & wire.UDFragMask {
		n, ok := f.frags[last+1]
		if !ok {
			return
		}
		last++
		fr = n
	}
	var msg []byte
	for s := first; s <= last; s++ {
		msg = append(msg, f.frags[s].data...)
		f.addBuf(-(len(f.frags[s].data) + fragOverhead))
		delete(f.frags, s)
	}
	f.push(msg)
}

// reassemble delivers, in sequence order, the complete messages whose
// fragments are all at or below the cumulative ack. A sequence number that
// was received but holds no fragment (abandoned, skipped by the FSN, or
// already delivered out of order) ends any partial message.
func (f *RecvFlow) reassemble() {
	cum := f.recv.cum()
	for f.next <= cum && f.next != 0 {
		fr, ok := f.frags[f.next]
		if !ok {
			f.dropPartial()
			f.next = f.nextBuffered(cum)
			continue
		}
		delete(f.frags, f.next)
		f.next++
		f.addBuf(-(len(fr.data) + fragOverhead))
		switch fr.flags & wire.UDFragMask {
		case wire.UDFragWhole:
			f.dropPartial()
			f.push(fr.data)
		case wire.UDFragFirst:
			f.dropPartial()
			f.partial, f.inMsg = fr.data, true
			f.charge(len(fr.data) + fragOverhead)
		case wire.UDFragMiddle:
			if f.inMsg {
				f.partial = append(f.partial, fr.data...)
				f.charge(len(fr.data))
			}
		case wire.UDFragLast:
			if f.inMsg {
				msg := append(f.partial, fr.data...)
				f.dropPartial()
				f.push(msg)
			}
		}
	}
	if len(f.frags) == 0 {
		f.frags = nil // maps never shrink: drop an empty one
	}
}

// addBuf changes the flow's buffer charge and the session's total.
func (f *RecvFlow) addBuf(n int) {
	f.buffered += n
	f.s.recvBuffered += n
}

// charge adds n bytes of the partial message to the buffer accounting.
func (f *RecvFlow) charge(n int) {
	f.pcharge += n
	f.addBuf(n)
}

// dropPartial forgets the message being assembled.
func (f *RecvFlow) dropPartial() {
	f.addBuf(-(f.pcharge))
	f.partial, f.inMsg, f.pcharge = nil, false, 0
}

// nextBuffered returns the lowest buffered sequence number above f.next and
// at most cum, or cum+1.
func (f *RecvFlow) nextBuffered(cum uint64) uint64 {
	if _, ok := f.frags[f.next+1]; ok || f.next+1 > cum {
		return f.next + 1
	}
	best := cum + 1
	for s := range f.frags {
		if s > f.next && s < best {
			best = s
		}
	}
	return best
}

func (f *RecvFlow) push(msg []byte) {
	if msg == nil {
		msg = []byte{}
	}
	if f.ready == nil {
		f.ready = f.one[:0]
	}
	f.ready = append(f.ready, msg)
	f.addBuf(len(msg) + fragOverhead)
	f.s.readable(f)
}

// appendAck writes this flow's ack (preceded by its exception report when
// rejected) into b within max bytes; b is returned unchanged if it does not
// fit.
func (f *RecvFlow) appendAck(b []byte, max int) []byte {
	start := len(b)
	if f.rejected {
		b = wire.FlowException{FlowID: f.ID, Code: f.excCode}.Append(b)
		if len(b)-start > max {
			return b[:start]
		}
	}
	w := f.window()
	a := wire.Ack{FlowID: f.ID, Window: w, Cum: f.recv.cum()}
	if len(f.recv.r) > 1 {
		a.Ranges = f.s.sc.ackRanges[:0]
		for _, r := range f.recv.r[1:] {
			a.Ranges = append(a.Ranges, wire.AckRange{Start: r.start, End: r.end})
		}
		f.s.sc.ackRanges = a.Ranges
	}
	n := len(b)
	b = a.Append(b, max-(n-start))
	if len(b) == n {
		return b[:start]
	}
	f.lastWindow = w
	f.ackNow, f.ackPending, f.pktsUnack = false, false, 0
	return b
}
