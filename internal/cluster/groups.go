package cluster

import (
	"time"

	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// NetGroup membership across nodes: the cluster's membership.Directory.
// Every node keeps every group's members, its own and the other nodes',
// in one membership.Local: its own members with their server handles, the
// others' with a remoteMember handle naming the node that serves them.
// Joins and leaves travel with the directory's changes (same numbering,
// same snapshots); every node applies every change to its copy, and the
// Local hands each announcement it decides on to this node's collector,
// which keeps those for this node's members and delivers them to the
// server's membership.Handler once d.mu is released. The other nodes'
// members are told by their own nodes, which apply the same change to the
// same ring. So the members of all nodes are bootstrapped as one group's,
// by the one policy, with nothing but membership changes sent between
// nodes. Of two sessions of one peer ID, on one node or two, the one with
// the later Since is the member on every node, whatever order the changes
// arrive in. When a node goes, its members leave every copy, the repairs
// reach the members that remain, and each copy remembers them as gone
// (Gone), as it does every member that leaves anywhere.

// remoteMember is the Local handle of a member another node serves: one
// per membership that node announced, so that a newer session of the peer
// there replaces the older one in the ring, and a leave removes only the
// membership it names.
type remoteMember struct{ node string }

// groupOp is one membership change of a node's member.
type groupOp struct {
	Join   bool
	Group  membership.GroupKey
	Peer   [32]byte
	Addr   [32]byte  // group address: the ring order
	Joined time.Time // joins only
	Since  time.Time // joins only: when the member's session connected
}

// memberKey names a membership as the ring does: group and group address.
type memberKey struct {
	group membership.GroupKey
	addr  [32]byte
}

// remoteMembership is a membership another node announced, with the
// handle it has in this node's ring.
type remoteMembership struct {
	op     groupOp
	handle *remoteMember
}

// groupDir is the cluster's membership.Directory on one node.
type groupDir struct {
	d    *dir
	ring *membership.Local // every node's members; changed only under d.mu
}

var _ membership.Directory = (*groupDir)(nil)

// collector is the ring's Handler. The ring is changed only with d.mu
// held, and a Local calls its Handler before Join or Leave returns, so
// this runs under d.mu: it keeps the announcements for this node's
// members until unlockAndDeliver.
type collector struct{ d *dir }

func (c collector) Announce(local any, a membership.Announcement) {
	if _, remote := local.(*remoteMember); !remote {
		c.d.announce = append(c.d.announce, a)
	}
}

// Join implements membership.Directory: this node's member joins; the
// other nodes hear of it and tell their own members.
func (g *groupDir) Join(k membership.GroupKey, m membership.Member) (membership.JoinResult, int) {
	d := g.d
	d.mu.Lock()
	res, n := g.ring.Join(k, m)
	changed := res == membership.Joined || res == membership.Replaced
	if changed {
		o := groupOp{Join: true, Group: k, Peer: m.Peer, Addr: m.Addr, Joined: m.Joined, Since: m.Since}
		d.localMembers[memberKey{k, m.Addr}] = o
		d.record(op{Group: &o})
	}
	d.unlockAndDeliver()
	if changed {
		d.n.wake()
	}
	return res, n
}

// Leave implements membership.Directory.
func (g *groupDir) Leave(k membership.GroupKey, m membership.Member, now time.Time) bool {
	d := g.d
	d.mu.Lock()
	ok := g.ring.Leave(k, m, now)
	mk := memberKey{k, m.Addr}
	o, mine := d.localMembers[mk]
	if ok && mine {
		delete(d.localMembers, mk)
		d.record(op{Group: &groupOp{Group: k, Peer: o.Peer, Addr: m.Addr}})
	}
	d.unlockAndDeliver()
	if ok && mine {
		d.n.wake()
	}
	return ok
}

// Gone implements membership.Directory: members that left on any node,
// or went with their node.
func (g *groupDir) Gone(peer [32]byte, now time.Time) (string, bool) { return g.ring.Gone(peer, now) }

// Totals implements membership.Directory: the whole cluster's.
func (g *groupDir) Totals() (groups, members int) { return g.ring.Totals() }

// Keys implements membership.Directory.
func (g *groupDir) Keys(limit int) []membership.KeySummary { return g.ring.Keys(limit) }

// Groups implements membership.Directory.
func (g *groupDir) Groups(id [32]byte) []membership.GroupKey { return g.ring.Groups(id) }

// Members implements membership.Directory.
func (g *groupDir) Members(k membership.GroupKey, limit int) ([]membership.Member, membership.GroupSummary, bool) {
	return g.ring.Members(k, limit)
}

// Changed implements membershiptest.Notifier.
func (g *groupDir) Changed() <-chan struct{} { return g.d.Changed() }

// applyGroup applies another node's membership change to this node's
// copy; d.mu held (the announcements for this node's members wait in
// d.announce).
func (d *dir) applyGroup(rn *remoteNode, o groupOp, now time.Time) {
	mk := memberKey{o.Group, o.Addr}
	if o.Join {
		if cur, ok := rn.members[mk]; ok && cur.op.Joined.Equal(o.Joined) && cur.op.Since.Equal(o.Since) {
			return // applied already (a snapshot and a change overlap)
		}
		h := &remoteMember{rn.name}
		rn.members[mk] = remoteMembership{o, h}
		m := membership.Member{Peer: o.Peer, Addr: o.Addr, Joined: o.Joined, Since: o.Since, Local: h}
		if res, _ := d.groups.ring.Join(o.Group, m); res == membership.Replaced {
			// A newer session of the peer joined through rn: if the
			// member was this node's, its membership is rn's now (this
			// node's server will find its Leave refused).
			delete(d.localMembers, mk)
		}
		return
	}
	cur, ok := rn.members[mk]
	if !ok {
		return
	}
	delete(rn.members, mk)
	d.groups.ring.Leave(o.Group, membership.Member{Peer: cur.op.Peer, Addr: o.Addr, Local: cur.handle}, now)
}

// leaveAll removes every membership rn holds; d.mu held.
func (d *dir) leaveAll(rn *remoteNode, now time.Time) {
	for _, m := range rn.members {
		o := m.op
		o.Join = false
		d.applyGroup(rn, o, now)
	}
}

// unlockAndDeliver releases d.mu, then hands the server the announcements
// for this node's members gathered under it.
func (d *dir) unlockAndDeliver() {
	ann := d.announce
	d.announce = nil
	d.mu.Unlock()
	for _, a := range ann {
		d.n.h.Announce(a.To.Local, a)
	}
}
