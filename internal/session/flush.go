package session

import (
	"math"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Flush builds and hands to out every packet the session may send now:
// address probes, close control, ping replies and keepalives, queued raw
// chunks, acknowledgements and user data within the congestion window, the
// far receive windows and the burst limit. out must not retain the slice.
func (s *Session) Flush(now time.Time, out func([]byte, netip.AddrPort)) {
	if s.state == stateClosed {
		return
	}
	for _, p := range s.probes {
		s.sendSingle(now, out, p.dest, wire.ChunkPing, p.payload)
	}
	s.probes = nil
	if s.state != stateOpen {
		s.flushControl(now, out)
		if s.pendingFinish {
			s.finish(s.err)
		}
		return
	}
	if s.pendingFinish {
		s.flushControl(now, out)
		s.finish(ErrClosedByPeer)
		return
	}
	if !s.paceAt.IsZero() && !now.Before(s.paceAt) {
		s.paceAt = time.Time{}
	}
	burst := 0
	for {
		s.startPacket(now)
		hdr := len(s.sc.pkt)
		s.addControl(now)
		sending := len(s.sc.pkt) > hdr || s.hasSendableData(now, burst)
		s.addAcks(now, sending)
		data := false
		if burst < maxBurst && !now.Before(s.paceAt) {
			data = s.addData(now)
		}
		if len(s.sc.pkt) == hdr {
			break
		}
		s.emit(now, out, s.dest)
		if data {
			burst++
			s.Stats.PacketsSent++
		}
	}
	if burst >= maxBurst && s.hasSendableData(now, 0) {
		if s.srtt >= 4500*time.Microsecond && s.cwnd > 0 {
			s.paceAt = now.Add(time.Duration(int64(s.srtt) * mss / int64(s.cwnd)))
		} else {
			s.paceAt = now
		}
	}
}

// WantsFlush reports that Flush would send data right now (the burst limit
// stopped the last one).
func (s *Session) WantsFlush(now time.Time) bool {
	return s.state == stateOpen && !s.paceAt.IsZero() && !now.Before(s.paceAt) && s.hasSendableData(now, 0)
}

func (s *Session) startPacket(now time.Time) {
	flags := wire.FlagTimestamp | wire.ModeResponder
	if s.cfg.Initiator {
		flags = wire.FlagTimestamp | wire.ModeInitiator
	}
	h := wire.Header{Timestamp: ticks(now)}
	if s.haveTSRx && now.Sub(s.tsRxAt) <= maxEchoAge {
		tse := s.tsRx + uint16(now.Sub(s.tsRxAt)/(4*time.Millisecond))
		if !s.sentTSE || tse != s.lastTSE {
			flags |= wire.FlagTimestampEcho
			h.TimestampEcho = tse
		}
	}
	// TCR: some other session of this endpoint recently received TC.
	if tcr := s.ep.lastTCRecv; s.ep.lastTCRecvFrom != s && now.Sub(tcr) < tcWindow ||
		s.ep.lastTCRecvFrom == s && now.Sub(s.ep.prevTCRecv) < tcWindow {
		flags |= wire.FlagTimeCriticalReverse
	}
	h.Flags = flags
	s.sc.pkt = wire.AppendHeader(s.sc.pkt[:0], h)
}

// emit seals the packet in s.sc.pkt and hands it out.
func (s *Session) emit(now time.Time, out func([]byte, netip.AddrPort), dest netip.AddrPort) {
	if s.sc.pkt[0]&wire.FlagTimestampEcho != 0 {
		s.sentTSE = true
		s.lastTSE = uint16(s.sc.pkt[3])<<8 | uint16(s.sc.pkt[4])
	}
	s.sc.out = s.cfg.Sealer.Seal(s.sc.out[:0], s.cfg.FarSID, s.sc.pkt)
	s.lastSend, s.cipherUsed = now, now
	out(s.sc.out, dest)
}

func (s *Session) room() int { return s.maxPacket - len(s.sc.pkt) }

// sendSingle sends one packet holding one chunk to dest.
func (s *Session) sendSingle(now time.Time, out func([]byte, netip.AddrPort), dest netip.AddrPort, typ byte, payload []byte) {
	s.startPacket(now)
	s.sc.pkt = wire.AppendChunk(s.sc.pkt, typ, payload)
	s.emit(now, out, dest)
}

// flushControl sends pending close requests and acknowledgements.
func (s *Session) flushControl(now time.Time, out func([]byte, netip.AddrPort)) {
	if s.sendCloseReq {
		s.sendCloseReq = false
		s.sendSingle(now, out, s.dest, wire.ChunkCloseRequest, nil)
	}
	if s.sendCloseAck {
		s.sendCloseAck = false
		s.sendSingle(now, out, s.dest, wire.ChunkCloseAck, nil)
	}
}

// addControl adds ping replies, a keepalive ping and queued raw chunks.
func (s *Session) addControl(now time.Time) {
	for len(s.pingReplies) > 0 && s.room() >= 3+len(s.pingReplies[0].payload) {
		s.sc.pkt = wire.AppendChunk(s.sc.pkt, wire.ChunkPingReply, s.pingReplies[0].payload)
		s.pingReplies = s.pingReplies[1:]
	}
	if len(s.pingReplies) == 0 {
		s.pingReplies = nil
	}
	if s.keepaliveDue(now) && s.room() >= 3 {
		s.sc.pkt = wire.AppendChunk(s.sc.pkt, wire.ChunkPing, nil)
		s.pingSent, s.pingAt = true, now
	}
	for len(s.rawChunks) > 0 && s.room() >= len(s.rawChunks[0]) {
		s.sc.pkt = append(s.sc.pkt, s.rawChunks[0]...)
		s.rawChunks = s.rawChunks[1:]
	}
	if len(s.rawChunks) == 0 {
		s.rawChunks = nil
	}
	for _, f := range s.sendOrder {
		if !f.probeAt.IsZero() && !now.Before(f.probeAt) && s.room() >= 3+wire.MaxVLULen {
			s.sc.pkt = wire.AppendFlowIDChunk(s.sc.pkt, wire.ChunkBufferProbe, f.ID)
			f.probeIvl = min(time.Duration(float64(f.probeIvl)*math.Sqrt2), 60*time.Second)
			f.probeAt = now.Add(f.probeIvl)
		}
	}
}

func (s *Session) keepaliveDue(now time.Time) bool {
	ka := s.cfg.Keepalive
	if ka <= 0 {
		return false
	}
	if !s.cfg.Initiator {
		ka += s.mrto // the two ends should not ping at the same moment
	}
	if s.pingSent {
		return now.Sub(s.pingAt) >= ka
	}
	return now.Sub(s.lastSend) >= ka && now.Sub(s.lastRecv) >= ka
}

// addAcks adds the acknowledgements that are due, and all pending ones
// when the packet goes out anyway.
func (s *Session) addAcks(now time.Time, piggyback bool) {
	for _, f := range s.recvFlows {
		if !f.ackPending && !f.ackNow {
			continue
		}
		if !f.ackNow && !piggyback && now.Before(f.ackDue) {
			continue
		}
		n := len(s.sc.pkt)
		s.sc.pkt = f.appendAck(s.sc.pkt, s.room())
		if len(s.sc.pkt) == n {
			return // full; the next packet carries the rest
		}
		f.ackDue = time.Time{}
	}
}

// hasSendableData reports whether some flow has data that the congestion
// window lets out.
func (s *Session) hasSendableData(now time.Time, burst int) bool {
	if burst >= maxBurst || now.Before(s.paceAt) || s.state != stateOpen {
		return false
	}
	if s.outstanding >= s.cwnd {
		return false
	}
	for _, f := range s.sendOrder {
		if f.rtx > 0 || f.closing && !f.finSent && len(f.pending) == 0 && f.canCut(0) {
			return true
		}
		if len(f.pending) > 0 && f.canCut(len(f.pending[0].data)-f.pending[0].off) {
			return true
		}
	}
	return false
}

// udSlack covers what a retransmission may need beyond the original
// chunk: a timestamp echo the original packet did not carry.
const udSlack = 4

// addData fills the rest of the packet with user data. It returns whether
// any was added.
func (s *Session) addData(now time.Time) bool {
	if len(s.sendOrder) == 0 {
		return false
	}
	added := false
	var prev *SendFlow
	var prevSeq uint64
	n := len(s.sendOrder)
	start := s.rr % n
	for i := 0; i < n; i++ {
		f := s.sendOrder[(start+i)%n]
		for f.hasWork() {
			if s.outstanding >= s.cwnd {
				return s.doneData(added, start)
			}
			withOpts := !f.gotAck
			fsnNow := f.fsn()
			hdr := wire.ChunkHeaderLen + 1 + wire.VLULen(f.ID) + 2*wire.VLULen(f.nextSeq) + udSlack
			if withOpts {
				hdr += len(f.options)
			}
			room := s.room() - hdr
			if room < 16 {
				break
			}
			if len(f.pending) > 0 && f.rtx == 0 && room < 256 && len(f.pending[0].data)-f.pending[0].off > room {
				break // start the message in a fresh packet instead
			}
			fr := f.nextFragment(room)
			if fr == nil {
				if f.farWindow == 0 && f.probeAt.IsZero() {
					f.probeIvl = max(time.Second, s.erto)
					f.probeAt = now.Add(f.probeIvl)
				}
				break
			}
			next := prev == f && fr.seq == prevSeq+1 && !withOpts
			ud := wire.UserData{Next: next, Flags: fr.flags, FlowID: f.ID, Seq: fr.seq, FSNOffset: fr.seq - fsnNow, Data: fr.data}
			if withOpts && prev != f {
				ud.Options = f.options
			}
			if need := ud.HeaderLen() + len(fr.data); need > s.room() {
				// A retransmission larger than what is left: next packet.
				if !fr.needRtx {
					panic("session: fresh fragment does not fit") // nextFragment cut it to fit
				}
				return s.doneData(added, start)
			}
			if !added {
				s.tsn++
				added = true
			}
			s.sc.pkt = ud.Append(s.sc.pkt)
			if fr.needRtx {
				fr.needRtx = false
				f.rtx--
				s.Stats.Retransmissions++
			} else {
				s.Stats.DataBytesSent += uint64(len(fr.data))
			}
			fr.inflight, fr.naks, fr.tsn = true, 0, s.tsn
			fr.charge = fr.size()
			f.flight += fr.charge
			if s.outstanding == 0 {
				s.rtoAt = now.Add(s.erto)
			}
			s.outstanding += fr.charge
			s.inflight = append(s.inflight, flightEntry{f: fr, sf: f, tsn: s.tsn})
			if f.TimeCritical {
				s.sc.pkt[0] |= wire.FlagTimeCritical
				s.lastTCSent, s.ep.lastTCSent = now, now
			}
			prev, prevSeq = f, fr.seq
		}
	}
	return s.doneData(added, start)
}

func (s *Session) doneData(added bool, start int) bool {
	if added {
		s.rr = start + 1
	}
	return added
}

// Timer runs the session's timers: message deadlines, retransmission
// timeout, liveness, idle timeout, close states and flow lingers.
func (s *Session) Timer(now time.Time) {
	if !s.cipherUsed.IsZero() && now.Sub(s.cipherUsed) >= cipherIdle {
		s.cfg.Sealer.Release()
		s.cfg.Opener.Release()
		s.cipherUsed = time.Time{}
	}
	switch s.state {
	case stateClosed:
		return
	case stateNearClose:
		if !now.Before(s.closeDeadline) {
			s.finish(ErrTimeout)
		} else if now.Sub(s.closeAt) >= closeRetransmit {
			s.sendCloseReq, s.closeAt = true, now
		}
		return
	case stateFarClose:
		if !now.Before(s.closeDeadline) {
			s.finish(ErrClosedByPeer)
		}
		return
	}
	// Message deadlines.
	keep := s.deadlines[:0]
	for _, d := range s.deadlines {
		if d.m.settled || d.m.abandoned {
			continue
		}
		if !now.Before(d.m.deadline) {
			d.f.abandonMsg(d.m)
			continue
		}
		keep = append(keep, d)
	}
	clear(s.deadlines[len(keep):])
	s.deadlines = keep
	// Retransmission timeout: everything in flight is lost.
	if s.outstanding > 0 && !s.rtoAt.IsZero() && !now.Before(s.rtoAt) {
		s.Stats.Timeouts++
		for _, e := range s.inflight {
			if e.f.tsn == e.tsn && e.f.inflight {
				e.f.inflight = false
				e.sf.flight -= e.f.charge
				if !e.f.needRtx {
					e.f.needRtx = true
					e.sf.rtx++
				}
			}
		}
		s.inflight = nil
		s.outstanding = 0
		s.ssthresh = max(s.ssthresh, s.cwnd*3/4)
		s.cwnd = cwndTimedOut
		s.erto = max(min(time.Duration(float64(s.erto)*1.414214), maxERTO), s.mrto)
		s.rtoAt = time.Time{}
		s.recoveryTSN = s.tsn + 1
	}
	// Liveness.
	if (s.pingSent || s.outstanding > 0 || s.rtxPending()) && now.Sub(s.lastRecv) >= s.cfg.DeadAfter {
		s.finish(ErrTimeout)
		return
	}
	if s.cfg.IdleTimeout > 0 && now.Sub(s.lastActivity) >= s.cfg.IdleTimeout && s.noLiveFlows() {
		s.Close(now)
		s.err = ErrIdle
		return
	}
	// Forget finished flows after their linger.
	keepRecv := s.recvFlows[:0]
	for _, f := range s.recvFlows {
		if f.rejected && f.doneAt.IsZero() {
			f.doneAt = now
		}
		if (f.finished || f.rejected) && f.Pending() == 0 && !f.doneAt.IsZero() && now.Sub(f.doneAt) >= recvFlowLinger {
			continue
		}
		keepRecv = append(keepRecv, f)
	}
	clear(s.recvFlows[len(keepRecv):])
	s.recvFlows = keepRecv
	keepFlows := s.sendOrder[:0]
	for _, f := range s.sendOrder {
		if f.complete {
			continue
		}
		keepFlows = append(keepFlows, f)
	}
	clear(s.sendOrder[len(keepFlows):])
	s.sendOrder = keepFlows
}

func (s *Session) rtxPending() bool {
	for _, f := range s.sendOrder {
		if f.rtx > 0 {
			return true
		}
	}
	return false
}

func (s *Session) noLiveFlows() bool {
	for _, f := range s.sendOrder {
		if !f.complete {
			return false
		}
	}
	for _, f := range s.recvFlows {
		if !f.finished && !f.rejected {
			return false
		}
	}
	return true
}

// Deadline is when Timer or Flush next has work, or the zero time if the
// session is closed.
func (s *Session) Deadline(now time.Time) time.Time {
	if s.state == stateClosed {
		return time.Time{}
	}
	var d time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	switch s.state {
	case stateNearClose:
		at(s.closeAt.Add(closeRetransmit))
		at(s.closeDeadline)
		return d
	case stateFarClose:
		at(s.closeDeadline)
		return d
	}
	if s.pendingFinish || len(s.probes) > 0 || len(s.pingReplies) > 0 || len(s.rawChunks) > 0 {
		return now
	}
	if !s.cipherUsed.IsZero() {
		at(s.cipherUsed.Add(cipherIdle))
	}
	if s.outstanding > 0 {
		at(s.rtoAt)
	}
	for _, f := range s.recvFlows {
		if f.ackNow {
			return now
		}
		if f.ackPending {
			at(f.ackDue)
		}
		if (f.finished || f.rejected) && f.Pending() == 0 && !f.doneAt.IsZero() {
			at(f.doneAt.Add(recvFlowLinger))
		}
	}
	for _, f := range s.sendOrder {
		at(f.probeAt)
		if f.complete {
			return now
		}
	}
	for _, e := range s.deadlines {
		at(e.m.deadline)
	}
	if s.hasSendableData(now, 0) {
		return now
	}
	if now.Before(s.paceAt) && s.hasSendableData(s.paceAt, 0) {
		at(s.paceAt)
	}
	if ka := s.cfg.Keepalive; ka > 0 {
		if !s.cfg.Initiator {
			ka += s.mrto
		}
		if s.pingSent {
			at(s.pingAt.Add(ka))
		} else {
			at(maxTime(s.lastSend, s.lastRecv).Add(ka))
		}
	}
	if s.pingSent || s.outstanding > 0 {
		at(s.lastRecv.Add(s.cfg.DeadAfter))
	}
	if s.cfg.IdleTimeout > 0 {
		at(s.lastActivity.Add(s.cfg.IdleTimeout))
	}
	return d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
