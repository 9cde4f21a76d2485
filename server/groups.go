package server

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// NetGroup server channel (reference §7.2-7.4). A client whose
// GroupSpecifier has serverChannelEnabled opens a "GC" flow per group and
// sends the group's ID on it; the server records the membership in the
// Directory (keyed by developer key and group ID) and tells members whom
// to connect to with "0b ‖ peer ID" messages on its own GC flow,
// associated with the client's. The members then meet through ordinary
// introductions. Leaving is finishing the GC flow or ending the session.

// maxGroupspec bounds the groupspec text of an old-form join (kind 0x10):
// real ones are a few hundred bytes at most.
const maxGroupspec = 1024

// gcFlow is one of a client's server channel flows: at most one group at
// a time. Its other fields belong to the client's event goroutine; the
// outgoing side is shared with other members' events, which announce
// peers to it.
type gcFlow struct {
	c      *client
	in     *engine.RecvFlow
	group  membership.GroupKey
	joined bool
	bucket tokenBucket

	mu     sync.Mutex // guards out and closed
	out    *engine.SendFlow
	closed bool
}

// tokenBucket is a per-flow message budget, small enough to keep per
// membership (x/time/rate's limiter holds a mutex it does not need here).
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) allow(now time.Time, rate float64, burst int) bool {
	if rate < 0 {
		return true
	}
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// send writes one message on the server's GC flow for this membership,
// opening it (associated with the client's) the first time. It never
// blocks: a member that stops acknowledging misses announcements.
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
	return g.out.TryWrite(msg) == nil
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
	}
	if !ok {
		f.Reject(0) // the client reports NetGroup.Connect.Failed
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
	if !g.bucket.allow(now, s.cfg.GroupMessageRate, s.groupBurst()) {
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
			// it, and the client hears that the join failed.
			c.dropGroupFlow(g)
			g.in.Reject(0)
		}
		return
	}
	s.mu.Lock()
	ok := c.state == connected
	s.mu.Unlock()
	if !ok {
		return
	}
	key := membership.GroupKey{DevKey: c.key, ID: id}
	if g.joined {
		if g.group == key {
			s.metrics.groupDrop("duplicate")
			return
		}
		c.leaveGroup(g, "moved") // a second join names another group (MonaServer 2)
	}
	for _, o := range c.gc {
		if o.joined && o.group == key {
			s.metrics.groupDrop("duplicate") // this client is a member through another flow
			return
		}
	}
	plan, joined := s.groups.Join(key, membership.Member{Peer: c.peerID, Addr: c.groupAddress(), Joined: now, Local: g}, nil)
	if !joined {
		s.metrics.groupDrop("duplicate")
		return
	}
	g.group, g.joined = key, true
	c.wasMember = true
	s.metrics.groupJoins.Inc()
	s.metrics.groupPlan.Observe(float64(len(plan)))
	s.announce(plan, c.peerID)
	s.tellGroup(SessionGroupJoined, c, hex.EncodeToString(id[:]))
}

// leaveGroup removes the flow's membership, if any, and sends the repair
// announcement.
func (c *client) leaveGroup(g *gcFlow, reason string) {
	if !g.joined {
		return
	}
	g.joined = false
	s := c.srv
	plan, ok := s.groups.Leave(g.group, membership.Member{Addr: c.groupAddress(), Local: g}, nil)
	if !ok {
		return
	}
	s.metrics.groupLeaves.WithLabelValues(reason).Inc()
	s.announce(plan, [32]byte{})
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
// at once (handing newcomers dead members is what makes joins slow), and
// if it ever was a member its peer ID is remembered as dead for the peers
// that may still dial it.
func (c *client) leaveAllGroups() {
	for _, g := range c.gc {
		c.leaveGroup(g, "session_closed")
		g.shut()
	}
	c.gc = nil
	if c.wasMember {
		c.srv.dead.add(c.peerID, c.key, time.Now())
	}
}

// announce delivers a plan's announcements to the members connected here.
// joiner is the peer whose join made the plan (zero for a leave's repair).
func (s *Server) announce(plan []membership.Announcement, joiner [32]byte) {
	var msg [33]byte
	for _, a := range plan {
		g, ok := a.To.Local.(*gcFlow)
		if !ok {
			continue // a member another node serves (a cluster delivers those)
		}
		kind := "repair"
		switch {
		case joiner == [32]byte{}:
		case a.To.Peer == joiner:
			kind = "joiner"
		default:
			kind = "member"
		}
		if !g.send(flash.AppendGroupMember(msg[:0], a.Peer)) {
			s.metrics.groupDrop("send_failed")
			continue
		}
		s.metrics.groupMessages.WithLabelValues(kind).Inc()
	}
}

func (s *Server) groupBurst() int { return max(1, int(2*s.cfg.GroupMessageRate)) }
