package cluster

import (
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// NetGroup membership across nodes. Every node keeps every group's
// members, its own and the other nodes', in one membership.Local: its own
// members with their server handles, the others' with a nodeHandle naming
// the node that serves them. Joins and leaves travel with the directory's
// changes (same numbering, same snapshots); every node applies every
// change to its copy and delivers the announcements addressed to its own
// members, while the others' are delivered by their nodes, which apply the
// same change to the same ring. So the members of all nodes are
// bootstrapped as one group's, by the one policy, with nothing but the
// membership changes sent between nodes. When a node goes, its members
// leave every copy and the repairs reach the members that remain; the
// peer IDs of members whose session ended are remembered as dead on every
// node, for the lookups of peers that still have them in their lists.

// nodeHandle is the Local handle of a member another node serves.
type nodeHandle struct{ node string }

// groupOp is one membership change of a node's member.
type groupOp struct {
	Join   bool
	Group  membership.GroupKey
	Peer   [32]byte
	Joined time.Time // joins only
}

// memberKey names a membership as the ring does: group and group address.
type memberKey struct {
	group membership.GroupKey
	addr  [32]byte
}

// announcement is a plan for this node's members: a join's (joiner set)
// or a leave's repair.
type announcement struct {
	plan   []membership.Announcement
	joiner [32]byte
}

// deadMember is a group member whose session ended on another node.
type deadMember struct {
	peer [32]byte
	key  string
}

// groupDir is the cluster's membership.Directory on one node.
type groupDir struct {
	d    *dir
	ring *membership.Local
}

var _ membership.Directory = (*groupDir)(nil)

// localOnly keeps the announcements from index from on that are for this
// node's members.
func localOnly(plan []membership.Announcement, from int) []membership.Announcement {
	out := plan[:from]
	for _, a := range plan[from:] {
		if _, remote := a.To.Local.(nodeHandle); !remote {
			out = append(out, a)
		}
	}
	return out
}

// Join implements membership.Directory: this node's member joins; the
// other nodes hear of it and tell their own members.
func (g *groupDir) Join(k membership.GroupKey, m membership.Member, out []membership.Announcement) ([]membership.Announcement, bool) {
	d := g.d
	d.mu.Lock()
	n := len(out)
	out, ok := g.ring.Join(k, m, out)
	if ok {
		o := groupOp{Join: true, Group: k, Peer: m.Peer, Joined: m.Joined}
		d.localMembers[memberKey{k, m.Addr}] = o
		d.record(op{Group: &o})
	}
	d.mu.Unlock()
	if ok {
		d.n.wake()
	}
	return localOnly(out, n), ok
}

// Leave implements membership.Directory.
func (g *groupDir) Leave(k membership.GroupKey, m membership.Member, out []membership.Announcement) ([]membership.Announcement, bool) {
	d := g.d
	d.mu.Lock()
	n := len(out)
	out, ok := g.ring.Leave(k, m, out)
	mk := memberKey{k, m.Addr}
	if o, mine := d.localMembers[mk]; ok && mine {
		delete(d.localMembers, mk)
		d.record(op{Group: &groupOp{Group: k, Peer: o.Peer}})
	}
	d.mu.Unlock()
	if ok {
		d.n.wake()
	}
	return localOnly(out, n), ok
}

// Totals implements membership.Directory: the whole cluster's.
func (g *groupDir) Totals() (groups, members int) { return g.ring.Totals() }

// Keys implements membership.Directory.
func (g *groupDir) Keys() []membership.KeySummary { return g.ring.Keys() }

// Groups implements membership.Directory.
func (g *groupDir) Groups(id [32]byte) []membership.GroupKey { return g.ring.Groups(id) }

// Members implements membership.Directory.
func (g *groupDir) Members(k membership.GroupKey, limit int) ([]membership.Member, membership.GroupSummary, bool) {
	return g.ring.Members(k, limit)
}

// applyGroup applies another node's membership change to this node's
// copy, keeping the announcements for this node's members for later
// delivery; d.mu held.
func (d *dir) applyGroup(rn *remoteNode, o groupOp) {
	addr := flash.GroupAddress(o.Peer)
	mk := memberKey{o.Group, addr}
	m := membership.Member{Peer: o.Peer, Addr: addr, Joined: o.Joined, Local: nodeHandle{rn.name}}
	if o.Join {
		if _, dup := rn.members[mk]; dup {
			return
		}
		rn.members[mk] = o
		rn.wasMember[o.Peer] = o.Group.DevKey
		// The peer joined through another node: its membership here (an
		// older session) is that node's now.
		delete(d.localMembers, mk)
		plan, ok := d.groups.ring.Join(o.Group, m, nil)
		if plan = localOnly(plan, 0); ok && len(plan) > 0 {
			d.announce = append(d.announce, announcement{plan, o.Peer})
		}
		return
	}
	if _, ok := rn.members[mk]; !ok {
		return
	}
	delete(rn.members, mk)
	plan, _ := d.groups.ring.Leave(o.Group, m, nil)
	if plan = localOnly(plan, 0); len(plan) > 0 {
		d.announce = append(d.announce, announcement{plan: plan})
	}
}

// leaveAll removes every membership rn holds and remembers its members
// as dead; d.mu held.
func (d *dir) leaveAll(rn *remoteNode) {
	for _, o := range rn.members {
		o.Join = false
		d.applyGroup(rn, o)
	}
	for peer, key := range rn.wasMember {
		d.dead = append(d.dead, deadMember{peer, key})
	}
	rn.wasMember = map[[32]byte]string{}
}

// peerGone notes that a peer of rn's that was a group member is gone;
// d.mu held.
func (d *dir) peerGone(rn *remoteNode, id [32]byte) {
	if key, ok := rn.wasMember[id]; ok {
		delete(rn.wasMember, id)
		d.dead = append(d.dead, deadMember{id, key})
	}
}

// unlockAndDeliver releases d.mu, then hands the server the announcements
// and dead members gathered under it.
func (d *dir) unlockAndDeliver() {
	ann, dead := d.announce, d.dead
	d.announce, d.dead = nil, nil
	d.mu.Unlock()
	for _, a := range ann {
		d.n.h.Announce(a.plan, a.joiner)
	}
	for _, m := range dead {
		d.n.h.Dead(m.peer, m.key)
	}
}
