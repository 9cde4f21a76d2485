package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Protocol constants (reference §4 and §8).
const (
	minERTO          = 250 * time.Millisecond
	maxERTO          = 10 * time.Second
	initialERTO      = 3 * time.Second
	initialMRTO      = 250 * time.Millisecond
	delayedAck       = 200 * time.Millisecond
	maxBurst         = 6
	nakThreshold     = 3
	tcWindow         = 800 * time.Millisecond
	closeRetransmit  = 5 * time.Second
	nearCloseGiveUp  = 90 * time.Second
	farCloseLinger   = 19 * time.Second
	recvFlowLinger   = 120 * time.Second
	mobilityInterval = time.Second
	mobilityValidity = 120 * time.Second
	maxEchoAge       = 128 * time.Second
	maxMetadata      = 512
	maxOptional      = 4  // optional options kept per received flow
	maxOptionalValue = 64 // bytes of each
	maxRecvFlows     = 256
	maxSeq           = 1 << 62 // sequence numbers beyond this are refused
	maxPingPayload   = 256
	maxPingReplies   = 4
)

// Handler receives a session's events. It is called synchronously from
// Receive, Flush and Timer, under the caller's lock; it must not block.
type Handler interface {
	// RecvFlow announces a flow the far end opened. The handler may set
	// f.ArrivalOrder or call f.Reject before any data is processed.
	RecvFlow(f *RecvFlow)
	// Readable: f has messages to read, finished, or was rejected.
	Readable(f *RecvFlow)
	// SendFlowChanged: f completed or was rejected by the receiver.
	SendFlowChanged(f *SendFlow)
	// FIHello: a Forwarded IHello arrived on a trusted introducer session.
	FIHello(s *Session, c wire.FIHello)
	// AddressChanged: the far end moved and the new address was validated.
	AddressChanged(s *Session, addr netip.AddrPort)
	// Closed: the session reached the closed state.
	Closed(s *Session, err error)
	// Wake: the application changed something and the session may want to
	// send; call Flush soon.
	Wake(s *Session)
}

// Endpoint is the state an endpoint's sessions share for congestion
// control's time-critical signals.
type Endpoint struct {
	lastTCSent     time.Time
	lastTCRecv     time.Time
	lastTCRecvFrom *Session
	prevTCRecv     time.Time
}

// Config describes a newly opened session.
type Config struct {
	Initiator bool // we sent the IHello; our packets use mode 1
	NearSID   uint32
	FarSID    uint32
	Dest      netip.AddrPort
	Sealer    *wire.Sealer
	Opener    *wire.Opener
	Handler   Handler
	Endpoint  *Endpoint
	// RecvBuffer bounds buffered receive data per flow (default 4 MiB);
	// SessionRecvBuffer bounds it for all flows of the session together
	// (default 4 × RecvBuffer), so that a hostile peer opening many flows
	// cannot multiply it.
	RecvBuffer        int
	SessionRecvBuffer int
	// Keepalive sends a ping after this much silence from us (0: never).
	Keepalive time.Duration
	// DeadAfter closes the session when nothing was received for this
	// long while a ping or data is outstanding (default 120 s).
	DeadAfter time.Duration
	// IdleTimeout closes the session in an orderly way after this long
	// without flows or traffic (0: never).
	IdleTimeout time.Duration
	// Introducer marks the far end as trusted to send Forwarded IHellos.
	Introducer bool
	// Scratch holds packet-building buffers; sessions that are never
	// flushed concurrently (one engine lock) share one, which keeps idle
	// sessions small. Nil gives the session its own.
	Scratch *Scratch
}

// cipherIdle is how long a session keeps its AES and HMAC state after the
// last packet: idle sessions then hold only their keys.
const cipherIdle = 2 * time.Second

// Scratch is reusable packet-building memory.
type Scratch struct {
	pkt, out  []byte
	ackRanges []wire.AckRange
}

type state int

const (
	stateOpen state = iota
	stateNearClose
	stateFarClose
	stateClosed
)

type outPing struct {
	payload []byte
	dest    netip.AddrPort
}

// Session is one open session.
type Session struct {
	cfg   Config
	state state
	err   error
	ep    *Endpoint

	dest   netip.AddrPort
	opened time.Time

	sendOrder  []*SendFlow // our flows, in round-robin order
	rr         int
	nextFlowID uint64
	recvFlows  []*RecvFlow // flows are few: a slice beats a map's memory

	// timestamps
	tsRx       uint16
	tsRxAt     time.Time
	haveTSRx   bool
	lastTSE    uint16
	sentTSE    bool
	lastEchoRx uint16
	haveEchoRx bool

	// RTT and RTO
	srtt, rttvar time.Duration
	haveRTT      bool
	mrto, erto   time.Duration
	rtoAt        time.Time

	// congestion control
	cwnd, ssthresh int
	outstanding    int
	tsn            uint64
	inflight       []flightEntry // transmissions in TSN order
	recoveryTSN    uint64
	ackedAccum     int
	lastTCSent     time.Time
	lastTCRRecv    time.Time
	paceAt         time.Time

	// liveness
	lastRecv      time.Time
	lastSend      time.Time
	lastActivity  time.Time
	pingSent      bool
	pingAt        time.Time
	closeAt       time.Time
	closeDeadline time.Time
	sendCloseReq  bool
	sendCloseAck  bool

	pingReplies []outPing
	probes      []outPing
	rawChunks   [][]byte

	// mobility
	mobSecret   [32]byte
	lastProbeAt time.Time
	lastMobSecs uint64

	pendingFinish bool
	recvBuffered  int       // receive data buffered across flows
	cipherUsed    time.Time // last Seal or Open; zero once released
	dataFlows     []*RecvFlow
	deadlines     []*dlEntry

	maxPacket  int
	sc         *Scratch
	ackedTSN   uint64
	ackedBytes int
	gotAcks    bool

	// Counters for tests and metrics.
	Stats Stats
}

// Stats counts what a session did.
type Stats struct {
	PacketsSent, PacketsRecv          uint64
	DataBytesSent, DataBytesRecv      uint64
	Retransmissions, Timeouts, Losses uint64
	BadPackets                        uint64
}

type flightEntry struct {
	f   *sfrag
	sf  *SendFlow
	tsn uint64
}

// New opens a session.
func New(cfg Config, now time.Time) *Session {
	if cfg.RecvBuffer <= 0 {
		cfg.RecvBuffer = 4 << 20
	}
	if cfg.SessionRecvBuffer <= 0 {
		cfg.SessionRecvBuffer = 4 * cfg.RecvBuffer
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 120 * time.Second
	}
	ep := cfg.Endpoint
	if ep == nil {
		ep = &Endpoint{}
	}
	s := &Session{
		cfg: cfg, ep: ep, dest: cfg.Dest, opened: now,
		nextFlowID: 2, // Flash numbers its first flow 2; any value is legal
		mrto:       initialMRTO, erto: initialERTO,
		cwnd: cwndInit, ssthresh: 1 << 30,
		lastRecv: now, lastSend: now, lastActivity: now,
	}
	if s.sc = cfg.Scratch; s.sc == nil {
		s.sc = &Scratch{}
	}
	_, _ = rand.Read(s.mobSecret[:])
	s.maxPacket = maxPacketLen(cfg.Sealer)
	return s
}

// maxPacketLen is the largest header-plus-chunks size whose datagram stays
// within wire.MaxSendSize.
func maxPacketLen(sl *wire.Sealer) int {
	over := sl.Overhead() // SID, seq VLU, checksum/HMAC, worst-case padding
	return wire.MaxSendSize - over
}

// maxHeader is the largest common header: flags, timestamp, echo.
const maxHeader = 5

// MSS is the data a full packet can carry, roughly (reference §1.8).
const mss = 1140

const (
	cwndInit     = 3 * mss
	cwndTimedOut = 2 * mss
)

// SetKeepalive changes the keepalive period (a server's set-keepalive
// event, say) and the silence after which the session is declared dead.
func (s *Session) SetKeepalive(keepalive, deadAfter time.Duration) {
	s.cfg.Keepalive = keepalive
	if deadAfter > 0 {
		s.cfg.DeadAfter = deadAfter
	}
}

// Dest is the far end's current address.
func (s *Session) Dest() netip.AddrPort { return s.dest }

// NearSID and FarSID are the session IDs.
func (s *Session) NearSID() uint32 { return s.cfg.NearSID }

// FarSID is the far end's session ID.
func (s *Session) FarSID() uint32 { return s.cfg.FarSID }

// IsOpen reports the S_OPEN state.
func (s *Session) IsOpen() bool { return s.state == stateOpen }

// IsClosed reports the S_CLOSED state.
func (s *Session) IsClosed() bool { return s.state == stateClosed }

// Err is why the session closed.
func (s *Session) Err() error { return s.err }

// SRTT is the smoothed round-trip time.
func (s *Session) SRTT() time.Duration { return s.srtt }

// CWND is the congestion window in bytes.
func (s *Session) CWND() int { return s.cwnd }

// sendFlow finds one of our flows by ID.
func (s *Session) sendFlow(id uint64) *SendFlow {
	for _, f := range s.sendOrder {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// recvFlow finds a flow the far end opened, by ID.
func (s *Session) recvFlow(id uint64) *RecvFlow {
	for _, f := range s.recvFlows {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (s *Session) wake() {
	if s.cfg.Handler != nil {
		s.cfg.Handler.Wake(s)
	}
}

func (s *Session) readable(f *RecvFlow) {
	if s.cfg.Handler != nil {
		s.cfg.Handler.Readable(f)
	}
}

func (s *Session) sendFlowChanged(f *SendFlow) {
	if s.cfg.Handler != nil {
		s.cfg.Handler.SendFlowChanged(f)
	}
}

// OpenFlow opens a send flow with the given metadata, optionally as the
// return flow of a flow we receive.
func (s *Session) OpenFlow(metadata []byte, assoc *RecvFlow, optional ...wire.Option) (*SendFlow, error) {
	if s.state != stateOpen {
		return nil, ErrSessionClosed
	}
	if len(metadata) > maxMetadata {
		return nil, ErrMetadata
	}
	f := &SendFlow{ID: s.nextFlowID, Metadata: metadata, s: s, nextSeq: 1, farWindow: initialFarWindow}
	s.nextFlowID++
	opts := wire.AppendOption(nil, wire.OptMetadata, metadata)
	if assoc != nil {
		f.Assoc, f.HasAssoc = assoc.ID, true
		opts = wire.AppendOptionVLU(opts, wire.OptReturnFlow, assoc.ID)
	}
	for _, o := range optional {
		if o.Type < wire.OptOptional || len(o.Value) > maxOptionalValue {
			return nil, ErrMetadata
		}
		opts = wire.AppendOption(opts, o.Type, o.Value)
	}
	f.options = append(opts, 0)
	s.sendOrder = append(s.sendOrder, f)
	return f, nil
}

// QueueChunk sends a raw, unreliable chunk (a Forwarded IHello, say) in
// the session's next packet.
func (s *Session) QueueChunk(chunk []byte) {
	if s.state == stateOpen && len(s.rawChunks) < 64 && len(chunk) <= s.maxPacket-maxHeader {
		s.rawChunks = append(s.rawChunks, chunk)
		s.wake()
	}
}

// SendChunk sends a raw, unreliable chunk (a Forwarded IHello, say) at
// once, in a packet of its own. It reports false if the session is not
// open or the chunk does not fit in a packet.
func (s *Session) SendChunk(now time.Time, out func([]byte, netip.AddrPort), chunk []byte) bool {
	if s.state != stateOpen || len(chunk) > s.maxPacket-maxHeader {
		return false
	}
	s.startPacket(now)
	s.sc.pkt = append(s.sc.pkt, chunk...)
	s.emit(now, out, s.dest)
	return true
}

// Close starts an orderly close (RFC 7016 §3.6.4): flows are torn down and
// close requests are sent until acknowledged or 90 s pass.
func (s *Session) Close(now time.Time) {
	if s.state != stateOpen {
		return
	}
	s.teardownFlows()
	s.state = stateNearClose
	s.sendCloseReq = true
	s.closeAt = now
	s.closeDeadline = now.Add(nearCloseGiveUp)
	s.err = ErrSessionClosed
	s.wake()
}

// Abort closes at once, telling the far end with one close acknowledgement.
func (s *Session) Abort(now time.Time, out func([]byte, netip.AddrPort)) {
	if s.state == stateClosed {
		return
	}
	if s.state == stateOpen {
		s.teardownFlows()
	}
	s.sendCloseAck = true
	s.flushControl(now, out)
	s.finish(ErrAborted)
}

func (s *Session) teardownFlows() {
	for _, f := range s.sendOrder {
		f.teardown()
		s.sendFlowChanged(f)
	}
	for _, f := range s.recvFlows {
		if !f.finished && !f.rejected {
			f.rejected = true
			s.readable(f)
		}
	}
	s.outstanding, s.inflight = 0, nil
}

func (s *Session) finish(err error) {
	if s.state == stateClosed {
		return
	}
	if s.state == stateOpen {
		s.teardownFlows()
	}
	s.state = stateClosed
	if s.err == nil || err != ErrSessionClosed {
		s.err = err
	}
	if s.cfg.Handler != nil {
		s.cfg.Handler.Closed(s, s.err)
	}
}

func ticks(t time.Time) uint16 { return uint16(t.UnixMilli() / 4) }

// Receive processes one datagram addressed to this session's ID. It
// returns an error (for counting) when the datagram is dropped.
func (s *Session) Receive(now time.Time, src netip.AddrPort, datagram []byte) error {
	if s.state == stateClosed {
		return ErrSessionClosed
	}
	pt, err := s.cfg.Opener.Open(datagram)
	s.cipherUsed = now
	if err != nil {
		s.Stats.BadPackets++
		return err
	}
	h, n, err := wire.ParseHeader(pt)
	if err != nil {
		s.Stats.BadPackets++
		return err
	}
	farMode := wire.ModeResponder
	if !s.cfg.Initiator {
		farMode = wire.ModeInitiator
	}
	if h.Mode() != farMode {
		s.Stats.BadPackets++
		return ErrMode
	}
	s.Stats.PacketsRecv++
	s.lastRecv = now
	if h.HasTimestamp() && (!s.haveTSRx || h.Timestamp != s.tsRx) {
		s.tsRx, s.tsRxAt, s.haveTSRx = h.Timestamp, now, true
	}
	if h.HasEcho() && (!s.haveEchoRx || h.TimestampEcho != s.lastEchoRx) {
		s.lastEchoRx, s.haveEchoRx = h.TimestampEcho, true
		if s.state == stateOpen {
			if d := ticks(now) - h.TimestampEcho; d < 32768 {
				s.rttSample(time.Duration(d) * 4 * time.Millisecond)
			}
		}
	}
	if h.Flags&wire.FlagTimeCritical != 0 {
		if s.ep.lastTCRecvFrom != s {
			s.ep.prevTCRecv = s.ep.lastTCRecv
		}
		s.ep.lastTCRecv, s.ep.lastTCRecvFrom = now, s
	}
	if h.Flags&wire.FlagTimeCriticalReverse != 0 {
		s.lastTCRRecv = now
	}
	preOutstanding := s.outstanding
	s.gotAcks, s.ackedTSN, s.ackedBytes = false, 0, 0
	// The previous User Data chunk, for a Next User Data chunk (a value:
	// a pointer to a copy made it escape, an allocation per chunk).
	var prev wire.UserData
	hasPrev := false
	dataFlows := s.dataFlowsBuf()
	for b := pt[n:]; ; {
		c, rest, ok := wire.NextChunk(b)
		if !ok {
			break
		}
		b = rest
		if c.Type != wire.ChunkNextUserData {
			hasPrev = false
		}
		switch c.Type {
		case wire.ChunkUserData, wire.ChunkNextUserData:
			if s.state != stateOpen {
				continue
			}
			ud, err := wire.ParseUserData(c.Payload, c.Type == wire.ChunkNextUserData)
			if err != nil {
				hasPrev = false
				continue
			}
			if ud.Next {
				if !hasPrev || prev.Seq >= maxSeq {
					continue
				}
				ud.FlowID, ud.Seq, ud.FSNOffset = prev.FlowID, prev.Seq+1, prev.FSNOffset+1
			}
			prev, hasPrev = ud, true
			if f := s.onUserData(now, ud); f != nil {
				dataFlows = appendUnique(dataFlows, f)
			}
		case wire.ChunkAckRanges, wire.ChunkAckBitmap:
			var a wire.Ack
			var err error
			if c.Type == wire.ChunkAckRanges {
				a, err = wire.ParseAckRanges(c.Payload)
			} else {
				a, err = wire.ParseAckBitmap(c.Payload)
			}
			if err != nil {
				continue
			}
			if f := s.sendFlow(a.FlowID); f != nil {
				acked, maxTSN := f.onAck(a)
				s.gotAcks = true
				s.ackedBytes += acked
				s.ackedTSN = max(s.ackedTSN, maxTSN)
			}
		case wire.ChunkPing:
			if s.state == stateOpen && len(s.pingReplies) < maxPingReplies && len(c.Payload) <= maxPingPayload {
				s.pingReplies = append(s.pingReplies, outPing{payload: append([]byte(nil), c.Payload...), dest: s.dest})
			}
		case wire.ChunkPingReply:
			s.onPingReply(now, src, c.Payload)
		case wire.ChunkBufferProbe:
			if id, err := wire.ParseBufferProbe(c.Payload); err == nil {
				if f := s.recvFlow(id); f != nil {
					f.ackNow, f.ackPending = true, true
				}
			}
		case wire.ChunkFlowException:
			if fe, err := wire.ParseFlowException(c.Payload); err == nil {
				if f := s.sendFlow(fe.FlowID); f != nil {
					f.onException(fe.Code)
				}
			}
		case wire.ChunkCloseRequest:
			switch s.state {
			case stateOpen:
				s.teardownFlows()
				s.state = stateFarClose
				s.closeDeadline = now.Add(farCloseLinger)
				s.err = ErrClosedByPeer
				s.sendCloseAck = true
			case stateNearClose, stateFarClose:
				s.sendCloseAck = true
			}
		case wire.ChunkCloseAck:
			switch s.state {
			case stateOpen:
				s.sendCloseAck = true
				s.err = ErrClosedByPeer
				s.pendingFinish = true
			case stateNearClose, stateFarClose:
				s.pendingFinish = true
			}
		case wire.ChunkFIHello:
			if s.cfg.Introducer && s.state == stateOpen && s.cfg.Handler != nil {
				if fi, err := wire.ParseFIHello(c.Payload); err == nil {
					s.cfg.Handler.FIHello(s, fi)
				}
			}
		}
	}
	for _, f := range dataFlows {
		f.pktsUnack++
		if f.pktsUnack >= 2 {
			f.ackNow = true
		}
		if f.ackPending && f.ackDue.IsZero() {
			f.ackDue = now.Add(delayedAck)
		}
	}
	s.dataFlows = dataFlows[:0]
	if s.gotAcks {
		s.afterAcks(now, preOutstanding)
	}
	if src != s.dest && s.state == stateOpen {
		s.maybeProbe(now, src)
	}
	s.lastActivity = now
	return nil
}

func appendUnique(l []*RecvFlow, f *RecvFlow) []*RecvFlow {
	for _, x := range l {
		if x == f {
			return l
		}
	}
	return append(l, f)
}

func (s *Session) dataFlowsBuf() []*RecvFlow { return s.dataFlows[:0] }

// dlEntry remembers a message with a deadline so that timers find it
// without walking every flow's queue.
type dlEntry struct {
	m *Message
	f *SendFlow
}

// onUserData routes a data chunk to its flow, creating the flow on its
// first chunk. It returns the flow if the chunk was recorded.
func (s *Session) onUserData(now time.Time, ud wire.UserData) *RecvFlow {
	f := s.recvFlow(ud.FlowID)
	if f == nil {
		if len(s.recvFlows) >= maxRecvFlows {
			return nil
		}
		f = &RecvFlow{ID: ud.FlowID, s: s, recv: rangeSet{r: []seqRange{{0, 0}}}, next: 1}
		s.recvFlows = append(s.recvFlows, f)
		ok, hasMeta := true, false
		if ud.Options != nil {
			_, _ = wire.WalkOptionList(ud.Options, func(o wire.Option) {
				switch {
				case o.Type == wire.OptMetadata:
					if len(o.Value) > maxMetadata {
						ok = false
					}
					f.Metadata, hasMeta = append([]byte(nil), o.Value...), true
				case o.Type == wire.OptReturnFlow:
					v, _, err := wire.ParseVLU(o.Value)
					if err != nil || s.sendFlow(v) == nil {
						ok = false
					}
					f.Assoc, f.HasAssoc = v, true
				case o.Type < wire.OptOptional:
					ok = false // unknown mandatory option
				case len(f.Optional) < maxOptional && len(o.Value) <= maxOptionalValue:
					// Optional options are kept (a few small ones) for
					// the layer above; the rest are ignored.
					f.Optional = append(f.Optional, wire.Option{Type: o.Type, Value: append([]byte(nil), o.Value...)})
				}
			})
		}
		if !ok || !hasMeta {
			// A flow must announce itself on its first chunk; refuse it
			// (rtmfp-cpp; Mona sends the same exception).
			f.Reject(0)
		} else if s.cfg.Handler != nil {
			s.cfg.Handler.RecvFlow(f)
		}
	}
	if !f.onData(now, ud) {
		return nil
	}
	s.Stats.DataBytesRecv += uint64(len(ud.Data))
	return f
}

func (s *Session) rttSample(rtt time.Duration) {
	if !s.haveRTT {
		s.srtt, s.rttvar, s.haveRTT = rtt, rtt/2, true
	} else {
		d := s.srtt - rtt
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + rtt) / 8
	}
	s.mrto = s.srtt + 4*s.rttvar + delayedAck
	s.erto = max(s.mrto, minERTO)
}

// afterAcks runs loss detection and congestion control once per received
// packet that carried acknowledgements (reference §4.8, §4.11).
func (s *Session) afterAcks(now time.Time, preOutstanding int) {
	lost, naks := 0, false
	// Every transmission older than the newest acked one has been passed
	// over: count a NAK; at three it is lost.
	i := 0
	for ; i < len(s.inflight); i++ {
		e := s.inflight[i]
		if e.f.tsn != e.tsn || !e.f.inflight {
			continue // stale entry: acked or retransmitted since
		}
		if e.tsn >= s.ackedTSN {
			break
		}
		naks = true
		e.f.naks++
		if e.f.naks >= nakThreshold {
			e.f.inflight = false
			e.sf.flight -= e.f.charge
			s.outstanding -= e.f.charge
			lost += e.f.charge
			if !e.f.needRtx {
				e.f.needRtx = true
				e.sf.rtx++
			}
			s.Stats.Losses++
		}
	}
	// Drop the stale prefix of the in-flight queue.
	j := 0
	for j < len(s.inflight) {
		e := s.inflight[j]
		if e.f.tsn == e.tsn && e.f.inflight {
			break
		}
		j++
	}
	if j > 0 {
		s.inflight = s.inflight[j:]
		if len(s.inflight) == 0 {
			s.inflight = nil
		}
	}
	if s.ackedBytes > 0 {
		s.rtoAt = now.Add(s.erto)
		s.pingSent = false
	}
	if s.outstanding == 0 {
		s.rtoAt = time.Time{}
	}
	tcSent := now.Sub(s.lastTCSent) < tcWindow
	fastGrow := now.Sub(s.lastTCRRecv) >= tcWindow && now.Sub(s.ep.lastTCSent) >= tcWindow
	if lost > 0 {
		if s.ackedTSN >= s.recoveryTSN {
			preCut := min(s.cwnd, preOutstanding)
			var cut int
			if tcSent || preOutstanding > 67200 && fastGrow {
				cut = preCut / 8
			} else {
				cut = max(preCut/2, lost*3/2)
			}
			s.ssthresh = max(preCut-cut, cwndInit)
			s.cwnd = s.ssthresh
			s.recoveryTSN = s.tsn + 1
		}
		return
	}
	if !naks && preOutstanding*64 > s.cwnd*63 {
		acked := s.ackedBytes
		var inc int
		if fastGrow {
			if s.cwnd < s.ssthresh {
				inc = acked
			} else {
				inc = s.growAvoid(acked, 96, 9600)
			}
		} else if tcSent && s.cwnd < s.ssthresh {
			inc = (acked + 3) / 4
		} else if tcSent {
			inc = s.growAvoid(acked, 48, 4800)
		} else {
			inc = s.growAvoid(acked, 24, 4800)
		}
		s.cwnd = max(s.cwnd+min(inc, mss), cwndInit)
	}
	if !naks && s.cwnd > preOutstanding+6*mss {
		s.cwnd--
	}
}

// growAvoid is congestion avoidance: step bytes per min(max(cwnd/16, 64),
// cap) bytes acknowledged.
func (s *Session) growAvoid(acked, step, cap int) int {
	unit := min(max(s.cwnd/16, 64), cap)
	s.ackedAccum += acked
	inc := s.ackedAccum / unit * step
	s.ackedAccum %= unit
	return inc
}

func (s *Session) onPingReply(now time.Time, src netip.AddrPort, p []byte) {
	if len(p) > 0 && p[0] == 'M' {
		if secs, ok := s.checkChallenge(now, src, p); ok && s.state == stateOpen && secs >= s.lastMobSecs {
			s.lastMobSecs = secs
			if src != s.dest {
				s.dest = src
				// New path: forget the RTT baseline (reference §4.13).
				s.haveRTT, s.mrto, s.erto = false, initialMRTO, initialERTO
				if s.cfg.Handler != nil {
					s.cfg.Handler.AddressChanged(s, src)
				}
			}
		}
		return
	}
	s.pingSent = false
}

func (s *Session) challenge(secs uint64, addr netip.AddrPort) []byte {
	b := append([]byte{'M'}, wire.AppendVLU(nil, secs)...)
	m := hmac.New(sha256.New, s.mobSecret[:])
	m.Write(b)
	m.Write(wire.AppendAddress(nil, addr, 0))
	return m.Sum(b)[:len(b)+16]
}

func (s *Session) checkChallenge(now time.Time, src netip.AddrPort, p []byte) (uint64, bool) {
	secs, n, err := wire.ParseVLU(p[1:])
	if err != nil || len(p) != 1+n+16 {
		return 0, false
	}
	if !hmac.Equal(s.challenge(secs, src), p) {
		return 0, false
	}
	age := now.Sub(s.opened) - time.Duration(secs)*time.Second
	return secs, age >= -time.Second && age <= mobilityValidity
}

// maybeProbe validates a new far address with a challenge ping, at most
// once a second; the session keeps its destination until the reply proves
// the new address.
func (s *Session) maybeProbe(now time.Time, src netip.AddrPort) {
	if now.Sub(s.lastProbeAt) < mobilityInterval || len(s.probes) >= 4 {
		return
	}
	s.lastProbeAt = now
	secs := uint64(now.Sub(s.opened) / time.Second)
	s.probes = append(s.probes, outPing{payload: s.challenge(secs, src), dest: src})
}
