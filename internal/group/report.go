package group

import (
	"fmt"
	"net/netip"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Address origins in reports: a peer's server ("host", where a rendezvous
// through it works) is origin 3; addresses seen by others are 2, those
// the peer reported itself 1.
const (
	OriginLocal  = wire.OriginReported
	OriginPublic = wire.OriginObserved
	OriginHost   = wire.OriginRelay
)

// Report bounds: addresses per option are kept below 128 bytes (so that
// the one-byte and VLU readings of its length agree, as librtmfp needs),
// and a report lists at most MaxReportPeers peers.
const (
	MaxReportAddrs  = 6
	MaxReportPeers  = 256
	maxAddrsOptSize = 127
)

// Report is a group report (0a): what the sender tells a neighbour about
// itself and about the peers the neighbour should know.
type Report struct {
	// SeenAs is the address the sender reaches the receiver at.
	SeenAs netip.AddrPort
	// Self lists the sender's own addresses, its server (OriginHost)
	// first.
	Self  []wire.Address
	Peers []ReportPeer
}

// ReportPeer is one record of a report.
type ReportPeer struct {
	ID    [32]byte
	Age   uint64 // seconds since the sender last had news of that peer
	Addrs []wire.Address
}

// AppendReport appends a report in the layout librtmfp reads (and
// writes): 0a, the 0d option with a one-byte length, the 0a option with a
// VLU length, then for each peer 00 22 21 0f ID ‖ VLU age ‖ VLU length 0a
// addresses, and a final 00.
func AppendReport(b []byte, r Report) []byte {
	b = append(b, TypeReport)
	seen := r.SeenAs
	if !seen.IsValid() {
		seen = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	b = append(b, byte(1+wire.AddressLen(seen)), 0x0d)
	b = wire.AppendAddress(b, seen, OriginPublic)
	b = appendAddrOption(b, r.Self)
	for i, p := range r.Peers {
		if i == MaxReportPeers {
			break
		}
		b = append(b, 0x00, 0x22, RawIDPrefix[0], RawIDPrefix[1])
		b = append(b, p.ID[:]...)
		b = wire.AppendVLU(b, p.Age)
		b = appendAddrOption(b, p.Addrs)
	}
	return append(b, 0x00)
}

// appendAddrOption writes VLU length ‖ 0a ‖ addresses, as many as fit in
// 127 bytes.
func appendAddrOption(b []byte, addrs []wire.Address) []byte {
	size := 1
	n := 0
	for _, a := range addrs {
		l := wire.AddressLen(a.AddrPort)
		if n == MaxReportAddrs || size+l > maxAddrsOptSize {
			break
		}
		size += l
		n++
	}
	b = append(b, byte(size), 0x0a)
	for _, a := range addrs[:n] {
		b = wire.AppendAddress(b, a.AddrPort, a.Origin)
	}
	return b
}

// ParseReport decodes a report. It accepts what librtmfp accepts: one-byte
// flag options (01 xx) before the 0d option, address option lengths in
// one byte or as a VLU, records with a non-peer first option (skipped),
// and it stops at anything malformed after the header, keeping the
// records read so far.
func ParseReport(m []byte) (Report, error) {
	var rep Report
	if len(m) < 1 || m[0] != TypeReport {
		return rep, ErrType
	}
	r := wire.Reader{B: m[1:]}
	l := r.Byte()
	for l == 1 && r.Err == nil {
		r.Byte()
		l = r.Byte()
	}
	if r.Err != nil {
		return rep, ErrShort
	}
	opt := r.Bytes(uint64(l))
	if r.Err != nil || len(opt) < 1 || opt[0] != 0x0d {
		return rep, fmt.Errorf("%w: no 0d option", ErrFormat)
	}
	if a, _, err := wire.ParseAddress(opt[1:]); err == nil {
		rep.SeenAs = netip.AddrPortFrom(a.AddrPort.Addr().Unmap(), a.AddrPort.Port())
	}
	self, ok := readAddrOption(&r)
	if !ok {
		return rep, fmt.Errorf("%w: sender's addresses", ErrFormat)
	}
	rep.Self = self
	for len(r.B) > 4 && len(rep.Peers) < MaxReportPeers {
		if r.Byte() != 0x00 {
			break
		}
		first := r.Byte()
		var id [32]byte
		isPeer := false
		switch {
		case first == 0x22:
			raw := r.Bytes(0x22)
			if r.Err != nil || raw[0] != RawIDPrefix[0] || raw[1] != RawIDPrefix[1] {
				return rep, nil
			}
			id, isPeer = [32]byte(raw[2:]), true
		case first > 7:
			r.Bytes(uint64(first))
		}
		age := r.VLU()
		addrs, ok := readAddrOption(&r)
		if !ok {
			break
		}
		if isPeer {
			rep.Peers = append(rep.Peers, ReportPeer{ID: id, Age: age, Addrs: addrs})
		}
	}
	return rep, nil
}

// readAddrOption reads a length (one byte if above 0x81, else a VLU), then
// 0a and addresses. It keeps at most 7 valid addresses.
func readAddrOption(r *wire.Reader) ([]wire.Address, bool) {
	if len(r.B) == 0 {
		return nil, false
	}
	var size uint64
	if r.B[0] > 0x81 {
		size = uint64(r.Byte())
	} else {
		size = r.VLU()
	}
	body := r.Bytes(size)
	if r.Err != nil || size == 0 || body[0] != 0x0a {
		return nil, false
	}
	list, _ := wire.ParseAddressList(body[1:], 7)
	out := list[:0]
	for _, a := range list {
		if a.AddrPort.Port() != 0 && !a.AddrPort.Addr().IsUnspecified() {
			a.AddrPort = netip.AddrPortFrom(a.AddrPort.Addr().Unmap(), a.AddrPort.Port())
			out = append(out, a)
		}
	}
	return out, true
}
