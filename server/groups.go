package server

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// NetGroup server channel (reference §7.2-7.4). A client whose
// GroupSpecifier has serverChannelEnabled opens a "GC" flow per group and
// sends the group's ID on it; the server records the membership in the
// membership.Directory (keyed by developer key and group ID), which
// decides whom to tell about whom and hands each announcement to the
// groupHandler of the server holding its recipient; that server sends
// "0b ‖ peer ID" on its own GC flow, associated with the client's. The
// members then meet through ordinary introductions. Leaving is finishing
// the GC flow or ending the session.

// maxGroupspec bounds the groupspec text of an old-form join (kind 0x10):
// real ones are a few hundred bytes at most.
const maxGroupspec = 1024

// maxGroupOutstanding bounds what one of the server's GC flows may hold
// unacknowledged: 124 announcements of 33 bytes. A member that keeps up
// acknowledges within a round trip, and a join or leave sends it at most
// one; announcements are advisory (members also learn peers from each
// other's group reports), so past this they are dropped and counted
// (send_failed) rather than held: a client advertising no window on its
// GC flows holds at most this much per group, not the engine's 1 MiB.
const maxGroupOutstanding = 4 << 10

// gcFlow is one of a client's server channel flows: at most one group at
// a time. Its other fields belong to the client's event goroutine; the
// outgoing side is shared with other members' events, which announce
// peers to it.
type gcFlow struct {
	c      *client
	in     *engine.RecvFlow
	group  membership.GroupKey
	joined bool

	mu     sync.Mutex // guards out and closed
	out    *engine.SendFlow
	closed bool
}

// send writes one message on the server's GC flow for this membership,
// opening it (associated with the client's) the first time. It never
// blocks: a member that stops acknowledging misses announcements past
// maxGroupOutstanding.
func (g *gcFlow) send(msg []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.out == nil {
		out, err := g.c.sess.OpenFlow(flash.GroupMetadata, g.in)
		if err != nil {
			return false
		}
		g.out = out
	}
	return g.out.TryWriteWithin(msg, maxGroupOutstanding) == nil
}

// shut finishes the server's GC flow; nothing is sent on it any more.
func (g *gcFlow) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed && g.out != nil {
		g.out.Close()
	}
	g.closed = true
}

// groupAddress is the client's place on every group's ring.
func (c *client) groupAddress() [32]byte {
	if !c.hasGroupAddr {
		c.groupAddr, c.hasGroupAddr = flash.GroupAddress(c.peerID), true
	}
	return c.groupAddr
}

// openGroupFlow accepts or refuses a GC flow (FlowOpened).
func (c *client) openGroupFlow(f *engine.RecvFlow) {
	s := c.srv
	s.mu.Lock()
	ok := c.state == connected
	s.mu.Unlock()
	switch {
	case !ok:
		s.metrics.groupDrop("not_connected")
	case s.cfg.MaxGroupsPerSession > 0 && len(c.gc) >= s.cfg.MaxGroupsPerSession:
		s.metrics.groupDrop("group_limit")
		ok = false
	case !c.groupAllow(time.Now()):
		s.metrics.groupDrop("rate") // opening a flow costs like a message: it buys no fresh budget
		ok = false
	}
	if !ok {
		// A flow exception: the SDK reports NetGroup.Connect.Rejected;
		// librtmfp drops its GC flow without an event (its NetGroup then
		// hears no announcements); what Flash does has not been checked.
		f.Reject(0)
		return
	}
	g := &gcFlow{c: c, in: f}
	f.Value = g
	c.gc = append(c.gc, g)
}

// onGroupMessage handles a message on a GC flow: a join, or something
// that is dropped and counted.
func (c *client) onGroupMessage(g *gcFlow, msg []byte) {
	s := c.srv
	now := time.Now()
	if !c.groupAllow(now) {
		s.metrics.groupDrop("rate")
		return
	}
	id, _, err := flash.ParseGroupJoin(msg, maxGroupspec)
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, flash.ErrNotJoin):
			// Nothing but joins is known on this flow (ArcusNode read a
			// second message as a leave; nobody sends one): ignored.
			s.metrics.groupDrop("unknown_message")
			return
		case errors.Is(err, flash.ErrGroupspecSize):
			reason = "oversized"
		}
		s.metrics.groupDrop(reason)
		if !g.joined {
			// Nothing is kept for a flow that never named a group: refuse
			// it (a flow exception, as in openGroupFlow).
			c.dropGroupFlow(g)
			g.in.Reject(0)
		}
		return
	}
	s.mu.Lock()
	ok := c.state == connected
	s.mu.Unlock()
	if !ok {
		s.metrics.groupDrop("not_connected") // the client is leaving: no new membership
		return
	}
	key := membership.GroupKey{DevKey: c.key, ID: id}
	for _, o := range c.gc {
		if o.joined && o.group == key {
			// A member already, through this flow or another: dropped
			// before anything changes (the flow keeps its group).
			s.metrics.groupDrop("duplicate")
			return
		}
	}
	if g.joined {
		c.leaveGroup(g, "moved") // a second join names another group (MonaServer 2)
	}
	if !s.reserveMember() {
		s.metrics.groupDrop("member_limit")
		// The flow is in no group: refuse it (a flow exception, as in
		// openGroupFlow).
		c.dropGroupFlow(g)
		g.in.Reject(0)
		return
	}
	res, announced := s.groups.Join(key, c.member(g, now))
	switch res {
	case membership.Joined, membership.Replaced:
	case membership.Superseded:
		s.groupMembers.Add(-1)
		s.metrics.groupDrop("superseded") // a newer session of this peer ID is the member
		return
	default:
		s.groupMembers.Add(-1)
		s.metrics.groupDrop("duplicate")
		return
	}
	g.group, g.joined = key, true
	s.metrics.groupJoins.Inc()
	s.metrics.groupPlan.Observe(float64(announced))
	s.tellGroup(SessionGroupJoined, c, hex.EncodeToString(id[:]))
}

// member is c's membership through GC flow g.
func (c *client) member(g *gcFlow, now time.Time) membership.Member {
	c.srv.mu.Lock()
	since := c.since
	c.srv.mu.Unlock()
	return membership.Member{Peer: c.peerID, Addr: c.groupAddress(), Joined: now, Since: since, Local: g}
}

// leaveGroup removes the flow's membership, if any: the directory sends
// the repair announcement and remembers the peer as gone (a lookup of it
// once its session has ended gets the "peer gone" answer).
func (c *client) leaveGroup(g *gcFlow, reason string) {
	if !g.joined {
		return
	}
	g.joined = false
	s := c.srv
	s.groupMembers.Add(-1)
	if !s.groups.Leave(g.group, membership.Member{Peer: c.peerID, Addr: c.groupAddress(), Local: g}, time.Now()) {
		return // a newer session of this peer ID took the membership over
	}
	s.metrics.groupLeaves.WithLabelValues(reason).Inc()
	s.tellGroup(SessionGroupLeft, c, hex.EncodeToString(g.group.ID[:]))
}

// dropGroupFlow forgets a GC flow: its membership goes, and the server's
// own GC flow is finished.
func (c *client) dropGroupFlow(g *gcFlow) {
	reason := "flow_closed"
	if c.sess.Closing() {
		reason = "session_closed" // the engine closes a dying session's flows first
	}
	for i, o := range c.gc {
		if o == g {
			c.gc = append(c.gc[:i], c.gc[i+1:]...)
			break
		}
	}
	c.leaveGroup(g, reason)
	g.shut()
}

// leaveAllGroups runs when the session is gone: its memberships disappear
// at once (handing newcomers dead members is what makes joins slow).
func (c *client) leaveAllGroups() {
	for _, g := range c.gc {
		c.leaveGroup(g, "session_closed")
		g.shut()
	}
	c.gc = nil
}

// groupHandler adapts Server to membership.Handler: the directory hands it
// the announcements for the members this server holds.
type groupHandler Server

func (h *groupHandler) Announce(local any, a membership.Announcement) {
	s := (*Server)(h)
	g, ok := local.(*gcFlow)
	if !ok {
		return // not a handle of this server's: nothing to send on
	}
	var msg [33]byte
	if !g.send(flash.AppendGroupMember(msg[:0], a.Peer)) {
		s.metrics.groupDrop("send_failed")
		return
	}
	s.metrics.groupMessages.WithLabelValues(a.Kind.String()).Inc()
}

// reserveMember counts one more membership, unless that would pass
// Config.MaxGroupMembers.
func (s *Server) reserveMember() bool {
	if n := s.groupMembers.Add(1); s.cfg.MaxGroupMembers > 0 && n > int64(s.cfg.MaxGroupMembers) {
		s.groupMembers.Add(-1)
		return false
	}
	return true
}

// groupAllow spends one unit of the client's NetGroup budget: GC flow
// opens and GC messages on any of its flows share it, so that neither a
// new flow nor many flows buy a fresh burst (each join or leave makes the
// server send up to a policy's worth of announcements to others).
func (c *client) groupAllow(now time.Time) bool {
	s := c.srv
	if s.cfg.GroupMessageRate < 0 {
		return true
	}
	if c.groupBudget == nil {
		c.groupBudget = rate.NewLimiter(rate.Limit(s.cfg.GroupMessageRate), s.groupBurst())
	}
	return c.groupBudget.AllowN(now, 1)
}

// groupBurst is twice the rate, and at least enough for a client to open
// and join every group it may hold at once.
func (s *Server) groupBurst() int {
	return max(1, int(2*s.cfg.GroupMessageRate), 2*s.cfg.MaxGroupsPerSession)
}
