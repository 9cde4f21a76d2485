package server

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/directory"
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
	p, found := s.dir.Lookup(id)
	target, _ := p.Local.(*client) // nil when another node holds the peer
	s.mu.Lock()
	initiator := s.byAddr[src]
	result := "ok"
	switch {
	case !found || target != nil && target.state != connected:
		result = "unknown"
	case target != nil && initiator == target || p.Observed == src:
		result = "self"
	case initiator != nil && initiator.state == connected && initiator.key != p.Key:
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
		if result == "unknown" && !found && s.signalDead(e, src, tag, id, initKey, anonymous) {
			result = "dead" // a departed group member: "gone", not silence
		}
		s.metrics.intro(s.keyLabel(p.Key), result)
		if result == "unknown" && initiator != nil && initiator.key != "" {
			s.keys.usage(initiator.key, store.Usage{LookupsMissed: 1})
		}
		return
	}
	samePublic := p.Observed.Addr() == src.Addr()
	var room [10]wire.Address // on the stack: the observed address and MaxPeerAddresses' default 8 fit
	redirect := addressList(room[:0], p.Observed, p.Addrs, samePublic)
	var extra []netip.AddrPort
	if samePublic && initiator != nil {
		extra = append(extra, initiator.addrs...)
	}
	key := p.Key
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
	if target != nil {
		// Here, directly (the hot path allocates nothing).
		target.sess.ForwardIHello(fwd, wire.Address{AddrPort: src, Origin: wire.OriginObserved}, tag)
		for _, a := range extra {
			if a.Addr().Is4() == src.Addr().Is4() {
				target.sess.ForwardIHello(fwd, wire.Address{AddrPort: a, Origin: wire.OriginReported}, tag)
			}
		}
	} else {
		// Another node holds the target: it sends the Forwarded IHellos
		// (its client trusts only its own server). The initiator heard
		// from us already, and retransmits if this gets lost.
		reply := make([]directory.Address, 1, 1+len(extra))
		reply[0] = directory.Address{AddrPort: src, Origin: wire.OriginObserved}
		for _, a := range extra {
			if a.Addr().Is4() == src.Addr().Is4() {
				reply = append(reply, directory.Address{AddrPort: a, Origin: wire.OriginReported})
			}
		}
		s.dir.Introduce(p, directory.Introduction{Target: id, EPD: fwd, Tag: tag, Reply: reply})
	}
	s.metrics.introLatency.Observe(time.Since(start).Seconds())
}

func keyOf(c *client) string {
	if c == nil {
		return ""
	}
	return c.key
}

// forwardIHellos sends the target of an introduction one Forwarded IHello
// per reply address.
func forwardIHellos(sess *engine.Session, in directory.Introduction) {
	for _, a := range in.Reply {
		sess.ForwardIHello(in.EPD, wire.Address{AddrPort: a.AddrPort, Origin: a.Origin}, in.Tag)
	}
}

// deliver adapts Server to directory.Handler: what this node does for
// its own clients when the directory (another node, in a cluster) asks.
type deliver Server

func (d *deliver) Introduce(local any, in directory.Introduction) {
	s := (*Server)(d)
	c, ok := local.(*client)
	if !ok {
		return
	}
	s.mu.Lock()
	live := c.state == connected
	s.mu.Unlock()
	if live {
		forwardIHellos(c.sess, in)
	}
}

func (d *deliver) Relay(local any, r directory.Relay) error {
	s := (*Server)(d)
	c, ok := local.(*client)
	if !ok {
		return directory.ErrGone
	}
	s.mu.Lock()
	live := c.state == connected && c.key == r.Key
	s.mu.Unlock()
	if !live {
		return directory.ErrGone
	}
	if c.trySend(r.Msg) != nil {
		return directory.ErrBehind
	}
	return nil
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
	p, found := s.dir.Lookup([32]byte(raw))
	s.mu.Lock()
	ok := found && from.state == connected && p.Key == from.key
	key := from.key
	s.mu.Unlock()
	if !ok {
		fail("relay: peer not connected")
		return
	}
	args = append([]any{hexID(from.peerID)}, args[1:]...)
	msg, err := flash.AppendCommand(nil, "onRelay", 0, nil, args...)
	if err != nil {
		fail("relay: cannot encode the arguments")
		return
	}
	r := directory.Relay{Target: p.ID, Key: key, Msg: msg}
	done := func(err error) {
		switch {
		case errors.Is(err, directory.ErrBehind):
			// The recipient is behind: the relay fails for its sender;
			// the recipient is not punished for someone else's traffic.
			fail("relay: peer is not keeping up")
		case errors.Is(err, directory.ErrUnreachable):
			fail("relay: the peer's cluster node did not answer")
		case err != nil:
			fail("relay: peer not connected")
		default:
			if cmd.TxID > 0 {
				from.command("_result", cmd.TxID, nil, amf.Undefined{})
			}
			s.metrics.relays.Inc()
			s.keys.usage(key, store.Usage{Relays: 1})
		}
	}
	if p.Local != nil {
		done((*deliver)(s).Relay(p.Local, r))
		return
	}
	// Another node holds the peer: its answer comes later, and the
	// sender's answer goes out on its own dispatcher.
	s.dir.Relay(p, r, func(err error) { go from.e.Run(func() { done(err) }) })
}
