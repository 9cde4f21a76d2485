package engine

import (
	"crypto/sha256"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/session"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// openStartup parses a default-key packet and returns its chunks; sh.mu
// held.
func (sh *shard) openStartup(src netip.AddrPort, d []byte) ([]byte, bool) {
	e := sh.e
	pt, err := sh.defOpen.Open(d)
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

// startup handles session-ID-0 packets: IHello, RHello, Redirect,
// IIKeying; sh.mu held.
func (sh *shard) startup(now time.Time, src netip.AddrPort, d []byte, forwarded bool) {
	e := sh.e
	var saved []byte
	if !forwarded && len(e.shards) > 1 && sh.anyOpening() {
		saved = append(saved, d...) // Open decrypts in place; another shard may want the original
	}
	chunks, ok := sh.openStartup(src, d)
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
				sh.onIHello(now, src, ih)
			} else {
				e.drop(&e.C.DropKeying, "malformed IHello", src)
			}
			return // at most one IHello per packet
		case wire.ChunkRHello:
			if rh, err := wire.ParseRHello(c.Payload); err == nil {
				if o := sh.openingFor(rh.Tag, src, saved); o != nil {
					sh.onRHello(now, src, o, rh)
				}
			}
		case wire.ChunkRedirect:
			if rd, err := wire.ParseRedirect(c.Payload); err == nil {
				if o := sh.openingFor(rd.Tag, src, saved); o != nil {
					sh.onRedirect(now, src, o, rd)
				}
			}
		case wire.ChunkIIKeying:
			if ik, err := wire.ParseIIKeying(c.Payload); err == nil {
				sh.onIIKeying(now, src, ik)
			} else {
				e.drop(&e.C.DropKeying, "malformed IIKeying", src)
			}
			return
		}
	}
}

// onIHello answers an IHello that selects us with an RHello, and hands the
// others to the application (introductions); sh.mu held.
func (sh *shard) onIHello(now time.Time, src netip.AddrPort, ih wire.IHello) {
	e := sh.e
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
				sh.pkt = wire.Redirect{Tag: ih.Tag, Addresses: addrs}.Append(sh.startupPacket(now))
				sh.sealStartup(0, src)
				e.C.RedirectsSent.Add(1)
				return
			}
		}
		sh.sendRHello(now, src, ih.Tag)
		return
	}
	if epd.HasFP && e.cfg.UnmatchedIHello != nil {
		// Run once the lock is released; the EPD and tag refer to the
		// read batch, which stays until then.
		sh.hellos = append(sh.hellos, unmatchedHello{src: src, epd: epd, tag: ih.Tag})
	}
}

// sendRHello answers an IHello; sh.mu held.
func (sh *shard) sendRHello(now time.Time, to netip.AddrPort, tag []byte) {
	var cookie [handshake.CookieLen]byte
	sh.cookies.Put(cookie[:], to, tag, now)
	sh.pkt = wire.RHello{Tag: tag, Cookie: cookie[:], Certificate: sh.e.id.Certificate}.Append(sh.startupPacket(now))
	sh.sealStartup(0, to)
	sh.e.C.RHellosSent.Add(1)
}

// onIIKeying runs the responder side of the keying exchange up to the
// Diffie-Hellman work, which runs once the batch is done, without the
// lock (runKeying); sh.mu held.
func (sh *shard) onIIKeying(now time.Time, src netip.AddrPort, ik wire.IIKeying) {
	e := sh.e
	switch err := sh.cookies.Check(ik.Cookie, src, now); {
	case errors.Is(err, handshake.ErrCookieAddress):
		// Ours, but the initiator's address changed since the IHello.
		var cookie [handshake.CookieLen]byte
		sh.cookies.Put(cookie[:], src, ik.Cookie[:16], now)
		sh.pkt = wire.CookieChange{Old: ik.Cookie, New: cookie[:]}.Append(sh.startupPacket(now))
		sh.sealStartup(ik.ISID, src)
		e.C.CookieChanges.Add(1)
		return
	case err != nil:
		e.dropErr(&e.C.DropCookie, "IIKeying cookie", src, err)
		return
	}
	// A retransmitted IIKeying for a session we already opened gets the
	// same RIKeying again.
	if s := sh.byAddr[src]; s != nil && s.isid == ik.ISID && s.skicHash == sha256.Sum256(ik.SKIC) {
		if s.rikeying != nil {
			sh.pkt = append(sh.startupPacket(now), s.rikeying...)
			sh.sealStartup(ik.ISID, src)
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
	for _, o := range sh.openings {
		if o.dest == src || o.hasCandidate(src) {
			if handshake.WinsGlare(e.id.Certificate, ik.Certificate) {
				return // our own handshake will complete
			}
			o.glareLost = true
		}
	}
	for _, j := range sh.keying {
		if j.src == src && j.ik.ISID == ik.ISID {
			return // a retransmission in the same batch
		}
	}
	if len(sh.keying) >= maxQueuedKeying {
		e.drop(&e.C.DropLimited, "keying queue full", src) // the initiator retransmits
		return
	}
	sh.keying = append(sh.keying, keyingJob{src: src, ik: ik})
}

// maxQueuedKeying bounds the Diffie-Hellman computations one batch may
// ask for (rtmfp-cpp allows 16 queued).
const maxQueuedKeying = 64

// keyingJob is a handshake waiting for its Diffie-Hellman work. The
// IIKeying refers to the read batch.
type keyingJob struct {
	src netip.AddrPort
	ik  wire.IIKeying
	acc *handshake.Accepted
	err error
}

// runKeying computes the batch's handshakes without the lock and opens
// their sessions; sh.mu held on entry and on return.
func (sh *shard) runKeying() {
	jobs := sh.keying
	sh.keying = nil
	sh.mu.Unlock()
	for i := range jobs {
		jobs[i].acc, jobs[i].err = sh.e.responder.Respond(jobs[i].ik)
	}
	sh.mu.Lock()
	now := time.Now()
	for i := range jobs {
		if !sh.e.closed.Load() {
			sh.completeKeying(now, jobs[i].src, jobs[i].ik, jobs[i].acc, jobs[i].err)
		}
		jobs[i] = keyingJob{}
	}
	if sh.keying == nil {
		sh.keying = jobs[:0]
	}
	sh.flushDirty(now)
	sh.flushOut()
}

// completeKeying opens the responder session once keying is computed;
// sh.mu held.
func (sh *shard) completeKeying(now time.Time, src netip.AddrPort, ik wire.IIKeying, acc *handshake.Accepted, err error) {
	e := sh.e
	if err != nil {
		e.C.HandshakesFailed.Add(1)
		if errors.Is(err, handshake.ErrCertificate) {
			e.dropErr(&e.C.DropCertificate, "IIKeying certificate", src, err)
		} else {
			e.dropErr(&e.C.DropKeying, "IIKeying refused", src, err)
		}
		return
	}
	skicHash := sha256.Sum256(ik.SKIC)
	if s := sh.byAddr[src]; s != nil && s.isid == ik.ISID && s.skicHash == skicHash {
		return // completed meanwhile
	}
	if old := sh.byAddr[src]; old != nil {
		if old.farCert != sha256.Sum256(ik.Certificate) {
			return // another endpoint's session lives at this address
		}
		old.core.Abort(now, sh.sendTo) // the peer restarted
	}
	sid, err := sh.newSID()
	if err != nil {
		e.log.Error("no session ID for a new session", "err", err)
		e.dropErr(&e.C.DropKeying, "no session ID", src, err)
		return
	}
	sealer, opener := acc.Keys.Ciphers()
	s := sh.newSession(now, false, sid, ik.ISID, src, sealer, opener, acc.Keys, acc.Certificate, ik.Certificate, false)
	s.isid, s.skicHash = ik.ISID, skicHash
	s.rikeying = wire.RIKeying{RSID: s.core.NearSID(), SKRC: acc.SKRC, Signature: handshake.Signature}.Append(nil)
	sh.byAddr[src] = s
	s.addrKey, s.inByAddr = src, true
	sh.pkt = append(sh.startupPacket(now), s.rikeying...)
	sh.sealStartup(ik.ISID, src)
	e.C.HandshakesOK.Add(1)
	for _, o := range slices.Clone(sh.openings) { // finish removes them
		if o.glareLost && o.state == openKeyingSent && string(o.respCertRaw) == string(ik.Certificate) {
			o.finish(s) // the far end's session replaces ours
		}
	}
	if e.cfg.Events != nil {
		sh.event(evSessionOpened, s, nil)
		return
	}
	e.accept(s)
}

// newSession registers a session that completed its handshake; sh.mu held.
func (sh *shard) newSession(now time.Time, initiator bool, nearSID, farSID uint32, dest netip.AddrPort, sealer *wire.Sealer, opener *wire.Opener,
	keys handshake.Keys, farCert *handshake.Certificate, farCertRaw []byte, introducer bool) *Session {
	e := sh.e
	s := &Session{e: e, sh: sh, initiator: initiator, farCert: sha256.Sum256(farCertRaw), peerID: farCert.Fingerprint(),
		nearNonce: keys.NearNonce, farNonce: keys.FarNonce}
	s.core = session.New(session.Config{
		Initiator: initiator, NearSID: nearSID, FarSID: farSID, Dest: dest,
		Sealer: sealer, Opener: opener, Handler: (*handler)(s), Endpoint: &sh.ep,
		RecvBuffer: e.cfg.RecvBuffer, SessionRecvBuffer: e.cfg.SessionRecvBuffer, Keepalive: e.cfg.Keepalive, DeadAfter: e.cfg.DeadAfter, IdleTimeout: e.cfg.IdleTimeout,
		Introducer: introducer, Scratch: &sh.scratch,
	}, now)
	sh.sessions[nearSID] = s
	s.isOpen.Store(true)
	e.gmu.Lock()
	e.peerCount[s.peerID]++
	if head := e.byPeer[s.peerID]; head == nil {
		e.byPeer[s.peerID] = s
	} else {
		// Another session with the same peer (it reconnected before its
		// old session ended): queued behind the first.
		for head.peerNext != nil {
			head = head.peerNext
		}
		head.peerNext, s.peerPrev = s, head
	}
	e.gmu.Unlock()
	e.C.SessionsOpen.Add(1)
	sh.schedule(s, now)
	return s
}

// sessionClosed unregisters a session; sh.mu held (called from the core's
// Closed event).
func (sh *shard) sessionClosed(s *Session) {
	e := sh.e
	nsid := s.core.NearSID()
	if sh.sessions[nsid] == s {
		delete(sh.sessions, nsid)
		e.C.SessionsOpen.Add(-1)
	}
	if s.inByAddr && sh.byAddr[s.addrKey] == s {
		delete(sh.byAddr, s.addrKey)
	}
	e.gmu.Lock()
	if e.peerCount[s.peerID]--; e.peerCount[s.peerID] <= 0 {
		delete(e.peerCount, s.peerID)
	}
	if e.byPeer[s.peerID] == s {
		if s.peerNext != nil {
			e.byPeer[s.peerID] = s.peerNext
		} else {
			delete(e.byPeer, s.peerID)
		}
	}
	if s.peerPrev != nil {
		s.peerPrev.peerNext = s.peerNext
	}
	if s.peerNext != nil {
		s.peerNext.peerPrev = s.peerPrev
	}
	s.peerPrev, s.peerNext = nil, nil
	e.gmu.Unlock()
	s.closed = true
	if s.done != nil {
		close(s.done)
	}
	s.broadcast()
	if !s.gone {
		sh.sessionGone(s)
	}
}
