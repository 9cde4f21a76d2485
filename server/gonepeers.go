package server

import (
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// signalDead answers a lookup for a peer ID with no session: if it left a
// group recently (membership.Directory.Gone; its session has ended, since
// it has none), the initiator gets MonaServer 2's "peer gone" answer, a
// Redirect with one unspecified address (0.0.0.0:0, location 0), which
// librtmfp reads as "drop this peer" (research notes §2.4 step 7) instead
// of dialling it for over a minute. initKey is the initiator's developer
// key, or "" for an initiator with no connected session (served only when
// anonymous lookups are, as introductions are).
func (s *Server) signalDead(e *engine.Engine, src netip.AddrPort, tag []byte, id [32]byte, initKey string, anonymous bool) bool {
	if anonymous && s.cfg.RefuseAnonymousLookups {
		return false
	}
	now := time.Now()
	key, ok := s.groups.Gone(id, now)
	if !ok || !anonymous && key != initKey {
		return false
	}
	if anonymous && !s.prefix.Allow(src.Addr(), now) {
		return false // an unproven source pays its prefix's budget, as for introductions
	}
	e.Redirect(src, tag, []wire.Address{{AddrPort: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), Origin: wire.OriginUnknown}})
	return true
}
