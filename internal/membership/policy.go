package membership

// Policy is the bootstrap policy: whom the server tells about whom when a
// member joins. Ring order is group-address order, the order in which
// Flash and librtmfp pick their own closest neighbours.
//
// On a join of X, with the group's members ordered by group address:
//
//   - X's Successors nearest members after it and Predecessors nearest
//     members before it on the ring are told about X (they dial X): X is
//     now among their nearest neighbours, and they are X's;
//   - X is told about Random members drawn uniformly from the rest of
//     the ring (X dials them): long links that keep the seeded graph an
//     expander rather than a ring, and seed X's first group reports with
//     distant peers.
//
// The members already there dial the newcomer, not the other way round: a
// client's dials leave on its handshake timer (librtmfp: a 500 ms tick
// that starts when it connected, so right after its join the newcomer's
// next tick is almost 500 ms away), while the members' timers run at
// random phases, so the first of several dials reaches the newcomer within
// a fraction of a tick; and a member that has died unnoticed dials nobody,
// where a newcomer told about it would spend its attempts on it. Each pair
// gets one announcement, never both sides (two simultaneous dials between
// the same peers are a glare that clients resolve at the price of an
// extra round trip). When X leaves, its former predecessor is told about
// its former successor, so the seeded graph keeps every adjacent pair of
// the ring linked whatever the churn.
//
// A join costs O(log n) and at most Successors + Predecessors + Random
// messages, whatever the group's size; a leave one message.
type Policy struct {
	Successors, Predecessors, Random int
}

// DefaultPolicy: four ring neighbours on each side and two random
// members. librtmfp (like Flash, its authors say) keeps its 2 nearest
// predecessors and 4 nearest successors as neighbours: X wants its own 2 +
// 4, and X enters the 4-successor window of its 4 nearest predecessors and
// the 2-predecessor window of its 2 nearest successors. Four on each side
// introduces every one of those pairs at once.
var DefaultPolicy = Policy{Successors: 4, Predecessors: 4, Random: 2}

// MaxMessages is the most announcements one join can cause.
func (p Policy) MaxMessages() int { return p.Successors + p.Predecessors + p.Random }

// planJoin appends the announcements for x joining r (x not yet in r).
// intn(n) returns a uniform random integer in [0, n).
func (p Policy) planJoin(r *Ring, x *Member, intn func(int) int, out []Announcement) []Announcement {
	n := r.Len()
	if n == 0 {
		return out
	}
	i := r.Rank(x.Addr) // the first member after x, in ring order
	var seen [16]int
	used := 0
	visit := func(rank int) bool {
		rank = ((rank % n) + n) % n
		for _, s := range seen[:used] {
			if s == rank {
				return false
			}
		}
		if used < len(seen) {
			seen[used] = rank
			used++
		}
		return true
	}
	for k := 0; k < max(p.Successors, p.Predecessors) && used < n; k++ {
		if k < p.Successors && visit(i+k) {
			out = append(out, Announcement{To: *r.At((i + k) % n), Peer: x.Peer, Kind: ToMember})
		}
		if k < p.Predecessors && used < n {
			if rank := i - 1 - k; visit(rank) {
				out = append(out, Announcement{To: *r.At(((rank % n) + n) % n), Peer: x.Peer, Kind: ToMember})
			}
		}
	}
	for k := 0; k < p.Random && used < n; k++ {
		// A few draws find an unvisited member unless the group is about
		// as small as the neighbourhood; then it is all visited already.
		for try := 0; try < 4; try++ {
			if rank := intn(n); visit(rank) {
				out = append(out, Announcement{To: *x, Peer: r.At(rank).Peer, Kind: ToJoiner})
				break
			}
		}
	}
	return out
}

// planLeave appends the repair announcement after a member of rank i left
// r: its former predecessor is told about its former successor.
func planLeave(r *Ring, i int, out []Announcement) []Announcement {
	n := r.Len()
	if n < 2 {
		return out
	}
	pred, succ := r.At(((i-1)%n+n)%n), r.At(i%n)
	return append(out, Announcement{To: *pred, Peer: succ.Peer, Kind: Repair})
}
