package session

// seqRange is an inclusive run of sequence numbers.
type seqRange struct{ start, end uint64 }

// rangeSet is a sorted set of disjoint, non-adjacent ranges. The receive
// side always holds 0 (sequence numbers start at 1), so ranges[0] starts at
// 0 and its end is the cumulative ack.
type rangeSet struct{ r []seqRange }

// maxRanges bounds the holes a receiver tracks per flow; a chunk that would
// exceed it is dropped unrecorded and the sender retransmits it later.
const maxRanges = 256

func (s *rangeSet) cum() uint64 { return s.r[0].end }

func (s *rangeSet) contains(x uint64) bool {
	lo, hi := 0, len(s.r)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case x < s.r[m].start:
			hi = m
		case x > s.r[m].end:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// canAdd reports whether adding [a,b] keeps the set within maxRanges.
func (s *rangeSet) canAdd(a, b uint64) bool {
	if len(s.r) < maxRanges {
		return true
	}
	c := *s
	c.r = append([]seqRange(nil), s.r...)
	c.add(a, b)
	return len(c.r) <= maxRanges
}

// add inserts [a,b], merging neighbours.
func (s *rangeSet) add(a, b uint64) {
	// Find the first range that ends at or after a-1 (could merge).
	i := 0
	for i < len(s.r) && s.r[i].end+1 < a && s.r[i].end != ^uint64(0) {
		i++
	}
	if i == len(s.r) {
		s.r = append(s.r, seqRange{a, b})
		return
	}
	if b+1 < s.r[i].start && b != ^uint64(0) {
		s.r = append(s.r, seqRange{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = seqRange{a, b}
		return
	}
	// Overlaps or touches r[i]: extend and swallow following ranges.
	if a < s.r[i].start {
		s.r[i].start = a
	}
	if b > s.r[i].end {
		s.r[i].end = b
	}
	j := i + 1
	for j < len(s.r) && (s.r[j].start <= s.r[i].end+1 || s.r[i].end == ^uint64(0)) {
		if s.r[j].end > s.r[i].end {
			s.r[i].end = s.r[j].end
		}
		j++
	}
	s.r = append(s.r[:i+1], s.r[j:]...)
}
