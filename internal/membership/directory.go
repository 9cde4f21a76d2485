// Package membership keeps NetGroup membership for the rendezvous server:
// each group's members on a ring ordered by group address, the bootstrap
// policy that decides whom to tell about whom (Policy), and the Directory
// that holds every group, scoped by developer key, and hands the
// announcements it decides on to the Handler of the node that holds each
// recipient. Local is the directory of a single server, in memory; a
// cluster's directory also knows the members other nodes hold. Both pass
// the conformance suite in package membershiptest. Nothing here does I/O:
// the Handler sends.
package membership

import "time"

// GroupKey names a group: developer keys isolate applications, so the same
// group ID under two keys is two groups.
type GroupKey struct {
	DevKey string
	ID     [32]byte
}

// Kind says why an announcement is sent (the server's metrics count them
// by kind).
type Kind uint8

const (
	// ToMember: a member is told about a newcomer (it dials the newcomer).
	ToMember Kind = iota
	// ToJoiner: a newcomer is told about a member (it dials the member).
	ToJoiner
	// Repair: after a leave, the departed member's ring predecessor is
	// told about its ring successor.
	Repair
)

func (k Kind) String() string {
	switch k {
	case ToMember:
		return "member"
	case ToJoiner:
		return "joiner"
	case Repair:
		return "repair"
	}
	return "unknown"
}

// Announcement asks one member to connect to a peer: the node that holds
// To sends it a "0b ‖ Peer" message on its server channel flow for Group.
type Announcement struct {
	Group GroupKey
	To    Member
	Peer  [32]byte
	Kind  Kind
}

// Handler is what the server does with the announcements for the members
// it holds. The directory calls it with the member's Local handle: on the
// node where the join or leave happened, before Join or Leave returns;
// on the other nodes of a cluster, when the news reaches them (a join
// there, or a node's death, which leaves every member it held).
type Handler interface {
	// Announce sends "0b ‖ a.Peer" on the GC flow local. It must not
	// block and must not call back into the Directory.
	Announce(local any, a Announcement)
}

// JoinResult is what became of a Join.
type JoinResult uint8

const (
	// Joined: a new member; the announcements went out.
	Joined JoinResult = iota + 1
	// Replaced: the peer was a member through an older session (an
	// earlier Since, or the same); this one takes its place, with no
	// announcement (the group knows the peer already).
	Replaced
	// Already: this very membership (the same Local handle) is there.
	Already
	// Superseded: a newer session of the peer is the member; nothing
	// changes.
	Superseded
)

func (r JoinResult) String() string {
	switch r {
	case Joined:
		return "joined"
	case Replaced:
		return "replaced"
	case Already:
		return "already"
	case Superseded:
		return "superseded"
	}
	return "unknown"
}

// Directory is where group membership lives. Implementations are safe for
// concurrent use and never call the Handler with a lock held that Join
// or Leave would take. Join and Leave cost O(log n) in the group's size
// and never wait for a network round trip; Totals is O(1); Keys, Groups
// and Members are for the admin API and cost what they list (Keys visits
// every group).
type Directory interface {
	// Join adds m, a member this node holds (m.Local set), to group g and
	// delivers the announcements the bootstrap policy calls for. Of two
	// sessions of one peer ID (the same group address), the one with the
	// later Since is the member, whatever order their joins come in. It
	// returns what became of the join and how many announcements it
	// caused.
	Join(g GroupKey, m Member) (_ JoinResult, announced int)
	// Leave removes m.Peer from g if its membership is still m.Local's,
	// deleting the group with its last member, delivers the repair
	// announcement, and remembers m.Peer as gone (Gone) from now on. It
	// reports whether the membership was there.
	Leave(g GroupKey, m Member, now time.Time) bool
	// Gone reports whether peer left a group (its GC flow closed, its
	// session ended, or its node died) less than GoneLifetime before now,
	// and the developer key of that group. The server asks only about
	// peer IDs with no session: for those, "recently left" is "recently
	// died". At most MaxGone peers are remembered, the most recent.
	Gone(peer [32]byte, now time.Time) (key string, ok bool)
	// Totals counts groups and memberships.
	Totals() (groups, members int)
	// Keys summarises each developer key's groups, by key, listing at
	// most limit groups of each (largest first; none if limit <= 0).
	Keys(limit int) []KeySummary
	// Groups lists the groups with a given ID (one per developer key), by
	// key.
	Groups(id [32]byte) []GroupKey
	// Members lists up to limit members of g in ring order (none if limit
	// <= 0), without their Local handles, with the group's summary; ok is
	// false if the group has no members.
	Members(g GroupKey, limit int) (_ []Member, _ GroupSummary, ok bool)
}

// How long, and how many, departed members Gone remembers. Members keep a
// peer they heard of for 5 minutes (librtmfp's NETGROUP_PEER_TIMEOUT) and
// dial it meanwhile; past that nobody asks.
const (
	GoneLifetime = 5 * time.Minute
	MaxGone      = 1 << 16
)

// KeySummary is one developer key's groups.
type KeySummary struct {
	DevKey     string
	GroupCount int
	Members    int
	Groups     []GroupSummary // largest first, at most the limit asked for
}

// GroupSummary is one group's size.
type GroupSummary struct {
	ID      [32]byte
	Members int
	Since   time.Time // when the group was created (its first member joined)
}
