package server

import (
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/store"
)

func hexID(id [32]byte) string { return hex.EncodeToString(id[:]) }

// maxForwardedEPD is the largest EPD forwarded verbatim.
const maxForwardedEPD = 256

// redirectBudget bounds the addresses in a Redirect so that it stays
// within about three times the smallest lookup IHello (68 bytes): no
// amplification (the datagram adds SID, header, tag and padding).
const redirectBudget = 3*68 - 4 - 5 - 3 - 17 - 15

// introduce handles an IHello naming a peer ID that is not ours
// (reference §3.2): a Redirect to the initiator with the target's
// addresses and a Forwarded IHello to the target, every time the
// initiator retransmits. It runs on the engine's receive goroutine.
func (s *Server) introduce(e *engine.Engine, src netip.AddrPort, epd handshake.EPD, tag []byte) {
	id, ok := epd.PeerID()
	if !ok {
		return
	}
	if !s.lookups.Allow() {
		s.metrics.intro("", "limited")
		s.dropped("lookup_rate", src)
		return
	}
	start := time.Now()
	s.mu.Lock()
	target := s.peerOf(id)
	initiator := s.byAddr[src]
	result := "ok"
	switch {
	case target == nil:
		result = "unknown"
	case initiator == target || target.observed == src:
		result = "self"
	case initiator != nil && initiator.state == connected && initiator.key != target.key:
		result = "isolated" // developer keys isolate applications
	case (initiator == nil || initiator.state != connected) && s.cfg.RefuseAnonymousLookups:
		result = "anonymous"
	case (initiator == nil || initiator.state != connected) && !s.prefix.Allow(src.Addr(), start):
		// An unproven source: what it makes us send (a Redirect to it, a
		// Forwarded IHello that makes the target answer it) is bounded
		// per source prefix like RHellos.
		result = "limited"
	}
	if result != "ok" {
		anonymous := initiator == nil || initiator.state != connected
		initKey := keyOf(initiator)
		s.mu.Unlock()
		if result == "unknown" && target == nil && s.signalDead(e, src, tag, id, initKey, anonymous) {
			result = "dead" // a departed group member: "gone", not silence
		}
		s.metrics.intro(s.keyLabel(keyOf(target)), result)
		if result == "unknown" && initiator != nil && initiator.key != "" {
			s.keys.usage(initiator.key, store.Usage{LookupsMissed: 1})
		}
		return
	}
	samePublic := target.observed.Addr() == src.Addr()
	var room [10]wire.Address // on the stack: the observed address and MaxPeerAddresses' default 8 fit
	redirect := addressList(room[:0], target.observed, target.addrs, samePublic)
	var extra []netip.AddrPort
	if samePublic && initiator != nil {
		extra = append(extra, initiator.addrs...)
	}
	key, tsess := target.key, target.sess
	s.mu.Unlock()
	// Forward the EPD as received (reference §3.2) unless it is larger than
	// any real one: then the canonical fingerprint EPD, which selects the
	// same peer.
	fwd := epd.Raw
	if len(fwd) > maxForwardedEPD {
		fwd = handshake.FingerprintEPD(id)
	}

	// Counted first: once the Redirect is out, the peers may be talking
	// before this function returns.
	s.metrics.intro(s.keyLabel(key), "ok")
	s.keys.usage(key, store.Usage{Introductions: 1})
	// The Redirect goes first so that the initiator's IHellos towards the
	// target leave its NAT before the target's RHello arrives (rtmfp-cpp).
	e.Redirect(src, tag, redirect)
	tsess.ForwardIHello(fwd, wire.Address{AddrPort: src, Origin: wire.OriginObserved}, tag)
	for _, a := range extra {
		if a.Addr().Is4() == src.Addr().Is4() {
			tsess.ForwardIHello(fwd, wire.Address{AddrPort: a, Origin: wire.OriginReported}, tag)
		}
	}
	s.metrics.introLatency.Observe(time.Since(start).Seconds())
}

func keyOf(c *client) string {
	if c == nil {
		return ""
	}
	return c.key
}

// addressList is the target's addresses for a Redirect: its observed
// address (origin 2) and its setPeerInfo addresses (origin 1), without
// duplicates; when initiator and target share a public IP they are likely
// on one LAN, so the local addresses come first. It appends to out.
func addressList(out []wire.Address, observed netip.AddrPort, reported []netip.AddrPort, localFirst bool) []wire.Address {
	obs := wire.Address{AddrPort: observed, Origin: wire.OriginObserved}
	if !localFirst {
		out = append(out, obs)
	}
	used := 0
	if !localFirst {
		used = wire.AddressLen(observed)
	}
	for _, a := range reported {
		if a == observed {
			continue
		}
		if used+wire.AddressLen(a)+wire.AddressLen(observed) > redirectBudget {
			break
		}
		used += wire.AddressLen(a)
		out = append(out, wire.Address{AddrPort: a, Origin: wire.OriginReported})
	}
	if localFirst {
		out = append(out, obs)
	}
	return out
}

// relay forwards relay(peerID, args...) to that peer as onRelay(fromID,
// args...), between clients of the same developer key (the Cirrus sample
// application's message).
func (s *Server) relay(from *client, cmd flash.Command) {
	fail := func(why string) { from.callFailed(cmd, why) }
	args := cmd.Arguments()
	if len(args) == 0 {
		fail("relay needs a peer ID")
		return
	}
	idStr, _ := args[0].(string)
	raw, err := hex.DecodeString(idStr)
	if err != nil || len(raw) != 32 {
		fail("relay: bad peer ID")
		return
	}
	s.mu.Lock()
	to := s.peerOf([32]byte(raw))
	if to != nil && to.key != from.key || from.state != connected {
		to = nil
	}
	s.mu.Unlock()
	if to == nil {
		fail("relay: peer not connected")
		return
	}
	args = append([]any{hexID(from.peerID)}, args[1:]...)
	msg, err := flash.AppendCommand(nil, "onRelay", 0, nil, args...)
	if err != nil {
		fail("relay: cannot encode the arguments")
		return
	}
	if to.trySend(msg) != nil {
		// The recipient is behind: the relay fails for its sender; the
		// recipient is not punished for someone else's traffic.
		fail("relay: peer is not keeping up")
		return
	}
	if cmd.TxID > 0 {
		from.command("_result", cmd.TxID, nil, amf.Undefined{})
	}
	s.metrics.relays.Inc()
	s.keys.usage(from.key, store.Usage{Relays: 1})
}
