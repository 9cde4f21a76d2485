package engine

import (
	"context"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

type openState int

const (
	openIHelloSent openState = iota
	openKeyingSent
)

// Retransmission schedule for IHello and IIKeying (rtmfp-cpp): t=0, then
// gaps of 1 s, 2.5 s, 4 s, ... growing by 1.5 s.
const (
	firstRetransmit = time.Second
	retransmitStep  = 1500 * time.Millisecond
	maxCandidates   = wire.MaxRedirectAddresses
	maxEarlyPackets = 18
)

// opening is an outgoing session between IHello and RIKeying. Its shard
// drives it: its fields are guarded by that shard's lock.
type opening struct {
	e           *Engine
	sh          *shard
	tag         []byte
	epdRaw      []byte
	epd         handshake.EPD
	candidates  []netip.AddrPort
	state       openState
	isid        uint32
	dest        netip.AddrPort
	cookie      []byte
	respCertRaw []byte
	respCert    *handshake.Certificate
	pending     *handshake.Pending
	iikeying    []byte
	cookieChg   bool
	nextRtx     time.Time
	gap         time.Duration
	deadline    time.Time
	introducer  bool
	glareLost   bool
	early       []earlyPacket

	done chan struct{}
	sess *Session
	err  error
}

type earlyPacket struct {
	src netip.AddrPort
	d   []byte
}

func (o *opening) hasCandidate(a netip.AddrPort) bool { return slices.Contains(o.candidates, a) }

// remove unregisters the opening; its shard's lock held.
func (o *opening) remove() {
	sh := o.sh
	if i := slices.Index(sh.openings, o); i >= 0 {
		sh.openings = slices.Delete(sh.openings, i, i+1)
	}
	if o.isid != 0 && sh.openSID[o.isid] == o {
		delete(sh.openSID, o.isid)
	}
	o.e.gmu.Lock()
	if o.e.openTag[string(o.tag)] == o {
		delete(o.e.openTag, string(o.tag))
		o.e.openings.Add(-1)
	}
	o.e.gmu.Unlock()
}

func (o *opening) finish(s *Session) {
	o.remove()
	if o.sess == nil && o.err == nil {
		o.sess = s
		close(o.done)
	}
}

func (o *opening) fail(err error) {
	o.remove()
	if o.sess == nil && o.err == nil {
		o.err = err
		close(o.done)
	}
}

// ConnectOptions tune Connect.
type ConnectOptions struct {
	// Introducer trusts the new session to send Forwarded IHellos (a
	// client's session with its rendezvous server).
	Introducer bool
	// Reuse returns an open session whose far end is selected by the EPD
	// instead of opening another (fingerprint EPDs only).
	Reuse bool
}

// Connect opens a session to the endpoint the EPD names, sending IHellos to
// every candidate address (and to any address a Redirect adds) until an
// RHello from a selected endpoint arrives, then keying with it. It gives up
// after Config.OpenTimeout or when ctx ends.
func (e *Engine) Connect(ctx context.Context, epdRaw []byte, opts ConnectOptions, candidates ...netip.AddrPort) (*Session, error) {
	epd, err := handshake.ParseEPD(epdRaw)
	if err != nil {
		return nil, err
	}
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if opts.Reuse {
		if id, ok := epd.PeerID(); ok {
			if s := e.SessionByPeer(id); s != nil && s.isOpen.Load() {
				return s, nil
			}
		}
	}
	tag := make([]byte, 16)
	if _, err := io.ReadFull(e.rnd, tag); err != nil {
		return nil, err
	}
	sh := e.shards[int(e.openRR.Add(1))%len(e.shards)]
	sh.mu.Lock()
	if e.closed.Load() {
		sh.mu.Unlock()
		return nil, ErrClosed
	}
	now := time.Now()
	o := &opening{e: e, sh: sh, tag: tag, epdRaw: append([]byte(nil), epdRaw...), introducer: opts.Introducer,
		gap: firstRetransmit, nextRtx: now.Add(firstRetransmit), deadline: now.Add(e.cfg.OpenTimeout), done: make(chan struct{})}
	o.epd, _ = handshake.ParseEPD(o.epdRaw)
	for _, c := range candidates {
		c = netip.AddrPortFrom(c.Addr().Unmap(), c.Port())
		if !o.hasCandidate(c) && len(o.candidates) < maxCandidates {
			o.candidates = append(o.candidates, c)
		}
	}
	e.gmu.Lock()
	if len(e.openTag) >= e.cfg.MaxOpening {
		e.gmu.Unlock()
		sh.mu.Unlock()
		return nil, ErrTooManyPending
	}
	e.openTag[string(tag)] = o
	e.openings.Add(1)
	e.gmu.Unlock()
	sh.openings = append(sh.openings, o)
	for _, c := range o.candidates {
		sh.sendIHello(now, o, c)
	}
	sh.unlockAndWake()

	select {
	case <-o.done:
	case <-ctx.Done():
		sh.mu.Lock()
		o.fail(ctx.Err())
		sh.mu.Unlock()
		<-o.done
	}
	if o.err != nil {
		return nil, o.err
	}
	return o.sess, nil
}

// opening returns this shard's opening with a session ID; sh.mu held.
func (sh *shard) opening(sid uint32) *opening {
	if sh.openSID == nil {
		return nil
	}
	return sh.openSID[sid]
}

// anyOpening reports that the engine is opening sessions.
func (sh *shard) anyOpening() bool { return sh.e.openings.Load() > 0 }

// openingFor finds the opening a startup chunk's tag names: this shard's,
// or else the datagram (saved before decryption) goes to its shard.
func (sh *shard) openingFor(tag []byte, src netip.AddrPort, saved []byte) *opening {
	e := sh.e
	e.gmu.Lock()
	o := e.openTag[string(tag)]
	e.gmu.Unlock()
	if o == nil {
		return nil
	}
	if o.sh == sh {
		return o
	}
	if saved != nil {
		sh.forward(o.sh, src, saved)
	}
	return nil
}

func (sh *shard) sendIHello(now time.Time, o *opening, to netip.AddrPort) {
	sh.pkt = wire.IHello{EPD: o.epdRaw, Tag: o.tag}.Append(sh.startupPacket(now))
	sh.sealStartup(0, to)
}

func (sh *shard) sendIIKeying(now time.Time, o *opening) {
	sh.pkt = append(sh.startupPacket(now), o.iikeying...)
	sh.sealStartup(0, o.dest)
}

// onRHello continues an opening whose EPD selects the responder; sh.mu
// held.
func (sh *shard) onRHello(now time.Time, src netip.AddrPort, o *opening, rh wire.RHello) {
	e := sh.e
	if o.state != openIHelloSent || len(rh.Cookie) > 1024 {
		return
	}
	raw := append([]byte(nil), rh.Certificate...)
	cert, err := handshake.ParseCertificate(raw)
	if err != nil {
		e.drop(&e.C.DropCertificate, "RHello certificate", src)
		return
	}
	if !o.epd.Selects(cert) {
		return
	}
	if s := e.SessionByPeer(cert.Fingerprint()); s != nil && s.isOpen.Load() && o.epd.HasFP {
		o.finish(s) // already talking to that endpoint: use that session
		return
	}
	p, err := e.initiator.Start(cert)
	if err != nil {
		e.dropErr(&e.C.DropKeying, "RHello", src, err)
		return
	}
	sid, err := sh.newSID()
	if err != nil {
		e.log.Error("no session ID for a new session", "err", err)
		e.dropErr(&e.C.DropKeying, "no session ID", src, err)
		return
	}
	o.isid = sid
	if sh.openSID == nil {
		sh.openSID = map[uint32]*opening{}
	}
	sh.openSID[o.isid] = o
	o.state, o.dest, o.cookie = openKeyingSent, src, append([]byte(nil), rh.Cookie...)
	o.respCertRaw, o.respCert, o.pending = raw, cert, p
	o.buildIIKeying()
	o.gap, o.nextRtx = firstRetransmit, now.Add(firstRetransmit)
	sh.sendIIKeying(now, o)
}

func (o *opening) buildIIKeying() {
	o.iikeying = wire.IIKeying{ISID: o.isid, Cookie: o.cookie, Certificate: o.e.id.Certificate, SKIC: o.pending.SKIC, Signature: handshake.Signature}.Append(nil)
}

// onRedirect adds the listed addresses as candidates and sends them
// IHellos; sh.mu held.
func (sh *shard) onRedirect(now time.Time, src netip.AddrPort, o *opening, rd wire.Redirect) {
	if o.state != openIHelloSent {
		return
	}
	addrs := rd.Addresses
	if len(addrs) == 0 {
		addrs = []wire.Address{{AddrPort: src, Origin: wire.OriginObserved}}
	}
	// The introducer (the first candidate: the rendezvous server) answering
	// with nothing but an unspecified address says the peer is gone
	// (MonaServer 2 and Stratus do so for members whose session ended).
	if len(o.candidates) > 0 && netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) == o.candidates[0] && allUnspecified(addrs) {
		o.fail(ErrPeerGone)
		return
	}
	for _, a := range addrs {
		c := netip.AddrPortFrom(a.AddrPort.Addr().Unmap(), a.AddrPort.Port())
		if !c.IsValid() || c.Port() == 0 || c.Addr().IsUnspecified() || o.hasCandidate(c) || len(o.candidates) >= maxCandidates {
			continue
		}
		o.candidates = append(o.candidates, c)
		sh.sendIHello(now, o, c)
	}
}

// openingPacket handles a packet on an opening session's ID: RIKeying or
// Cookie Change under the default key, or an early session packet; sh.mu
// held.
func (sh *shard) openingPacket(now time.Time, src netip.AddrPort, o *opening, d []byte) {
	e := sh.e
	if o.state != openKeyingSent {
		return
	}
	saved := append([]byte(nil), d...)
	pt, err := sh.defOpen.Open(d)
	if err != nil {
		// Probably the responder's first session packet overtaking its
		// RIKeying: keep a few and replay them once the session opens.
		if len(o.early) < maxEarlyPackets {
			o.early = append(o.early, earlyPacket{src, saved})
		}
		return
	}
	h, n, err := wire.ParseHeader(pt)
	if err != nil || h.Mode() != wire.ModeStartup {
		e.drop(&e.C.DropMode, "opening packet in the wrong mode", src)
		return
	}
	for b := pt[n:]; ; {
		c, rest, ok := wire.NextChunk(b)
		if !ok {
			return
		}
		b = rest
		switch c.Type {
		case wire.ChunkRIKeying:
			rk, err := wire.ParseRIKeying(c.Payload)
			if err != nil {
				e.drop(&e.C.DropKeying, "malformed RIKeying", src)
				return
			}
			sh.completeOpening(now, src, o, rk)
			return
		case wire.ChunkCookieChange:
			cc, err := wire.ParseCookieChange(c.Payload)
			if err != nil || o.cookieChg || string(cc.Old) != string(o.cookie) || len(cc.New) > 1024 {
				return
			}
			o.cookieChg = true
			o.cookie = append([]byte(nil), cc.New...)
			o.buildIIKeying()
			sh.sendIIKeying(now, o)
			return
		}
	}
}

func (sh *shard) completeOpening(now time.Time, src netip.AddrPort, o *opening, rk wire.RIKeying) {
	e := sh.e
	keys, err := o.pending.Finish(rk.SKRC)
	if err != nil {
		e.C.HandshakesFailed.Add(1)
		e.dropErr(&e.C.DropKeying, "RIKeying refused", src, err)
		return
	}
	o.remove()
	sealer, opener := keys.Ciphers()
	s := sh.newSession(now, true, o.isid, rk.RSID, o.dest, sealer, opener, keys, o.respCert, o.respCertRaw, o.introducer)
	e.C.HandshakesOK.Add(1)
	o.finish(s)
	for _, p := range o.early {
		_ = s.core.Receive(now, p.src, p.d)
	}
	o.early = nil
	sh.markDirty(s)
}

// openingTimers retransmits IHellos and IIKeyings and expires openings;
// sh.mu held.
func (sh *shard) openingTimers(now time.Time) {
	for _, o := range slices.Clone(sh.openings) {
		if !now.Before(o.deadline) {
			o.fail(ErrOpenTimeout)
			continue
		}
		if now.Before(o.nextRtx) {
			continue
		}
		switch o.state {
		case openIHelloSent:
			for _, c := range o.candidates {
				sh.sendIHello(now, o, c)
			}
		case openKeyingSent:
			sh.sendIIKeying(now, o)
		}
		o.gap += retransmitStep
		o.nextRtx = now.Add(o.gap)
	}
}

// nextOpeningTimer is the earliest opening timer; sh.mu held.
func (sh *shard) nextOpeningTimer() time.Time {
	var t time.Time
	for _, o := range sh.openings {
		for _, x := range []time.Time{o.nextRtx, o.deadline} {
			if t.IsZero() || x.Before(t) {
				t = x
			}
		}
	}
	return t
}

func allUnspecified(addrs []wire.Address) bool {
	for _, a := range addrs {
		if a.AddrPort.IsValid() && !a.AddrPort.Addr().IsUnspecified() {
			return false
		}
	}
	return len(addrs) > 0
}
