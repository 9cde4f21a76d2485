package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Cluster messages are binary: a header naming the sender, a body whose
// layout depends on the kind, and an HMAC-SHA256 over the subject and
// everything before it, keyed with a key derived from the cluster secret.
// A message that fails any check is dropped and counted, never trusted.
//
//	version(1) kind(1) nameLen(1) name epoch(8) unixMillis(8) body mac(32)

// Errors from parsing cluster messages.
var (
	errShort    = errors.New("cluster: message too short")
	errVersion  = errors.New("cluster: unknown message version")
	errMAC      = errors.New("cluster: message authentication failed")
	errMalform  = errors.New("cluster: malformed message")
	errTooLarge = errors.New("cluster: field too large")
)

const (
	msgVersion = 1
	macLen     = sha256.Size
	// Bounds on what one message may carry; real values are far smaller.
	maxNodeName = 64
	maxKeyLen   = 256 // a developer key, as the server cuts them
	maxEPD      = 256 // maxForwardedEPD in the server
	maxTag      = 256 // the engine's bound on IHello tags
	maxAddrs    = 16
	maxRelayMsg = 64 << 10
	maxVersion  = 64
	maxOps      = 1 << 16
)

type kind byte

const (
	kindDelta      kind = 1 // directory changes of the sender's peers
	kindHeartbeat  kind = 2 // the sender is alive; its load
	kindBye        kind = 3 // the sender is leaving: forget its peers
	kindSnapReq    kind = 4 // send me all your peers
	kindSnapPart   kind = 5 // part of such a snapshot
	kindIntro      kind = 6 // send Forwarded IHellos to one of your peers
	kindRelay      kind = 7 // deliver a relay to one of your peers
	kindRelayReply kind = 8 // how a relay went
	kindGroup      kind = 9 // group membership changes (groups.go)
)

// header is what every message says about its sender.
type header struct {
	Kind  kind
	Node  string
	Epoch uint64    // random per node start: a restart is a new epoch
	Time  time.Time // when it was sent (millisecond precision)
}

// seal appends the message to b and signs it.
func seal(b []byte, key []byte, subject string, h header, body func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, msgVersion, byte(h.Kind), byte(len(h.Node)))
	b = append(b, h.Node...)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Time.UnixMilli()))
	if body != nil {
		b = body(b)
	}
	return append(b, mac(key, subject, b[start:])...)
}

func mac(key []byte, subject string, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subject))
	m.Write([]byte{0})
	m.Write(msg)
	return m.Sum(nil)
}

// open checks a message's signature and returns its header and body.
func open(key []byte, subject string, msg []byte) (header, []byte, error) {
	var h header
	if len(msg) < 3+8+8+macLen {
		return h, nil, errShort
	}
	signed, sum := msg[:len(msg)-macLen], msg[len(msg)-macLen:]
	if !hmac.Equal(sum, mac(key, subject, signed)) {
		return h, nil, errMAC
	}
	if signed[0] != msgVersion {
		return h, nil, errVersion
	}
	h.Kind = kind(signed[1])
	n := int(signed[2])
	if n == 0 || n > maxNodeName || len(signed) < 3+n+16 {
		return h, nil, errMalform
	}
	h.Node = string(signed[3 : 3+n])
	p := signed[3+n:]
	h.Epoch = binary.BigEndian.Uint64(p)
	h.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(p[8:])))
	return h, p[16:], nil
}

// reader decodes a body field by field; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) vlu() uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := wire.ParseVLU(r.b)
	if err != nil {
		r.fail(errMalform)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail(errMalform)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail(errMalform)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64 {
	if v := r.fixed(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// bytes reads a length-prefixed field of at most max bytes (copied).
func (r *reader) bytes(max int) []byte {
	n := r.vlu()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(errTooLarge)
		return nil
	}
	return append([]byte(nil), r.fixed(int(n))...)
}

func (r *reader) id() (id [32]byte) {
	copy(id[:], r.fixed(32))
	return id
}

func (r *reader) addr() directory.Address {
	if r.err != nil {
		return directory.Address{}
	}
	a, n, err := wire.ParseAddress(r.b)
	if err != nil {
		r.fail(errMalform)
		return directory.Address{}
	}
	r.b = r.b[n:]
	return directory.Address{AddrPort: a.AddrPort, Origin: a.Origin}
}

// addrs reads a count byte and that many addresses.
func (r *reader) addrs() []directory.Address {
	n := int(r.byte())
	if n > maxAddrs {
		r.fail(errTooLarge)
		return nil
	}
	var out []directory.Address
	for range n {
		if a := r.addr(); r.err == nil {
			out = append(out, a)
		}
	}
	return out
}

// done reports the first error, or errMalform if bytes are left over.
func (r *reader) done() error {
	if r.err == nil && len(r.b) > 0 {
		return errMalform
	}
	return r.err
}

func appendBytes(b, v []byte) []byte { return append(wire.AppendVLU(b, uint64(len(v))), v...) }

func appendAddrs(b []byte, addrs []directory.Address) []byte {
	b = append(b, byte(len(addrs)))
	for _, a := range addrs {
		b = wire.AppendAddress(b, a.AddrPort, a.Origin)
	}
	return b
}

// op is one directory change: a peer put (with its record) or removed,
// or a group membership change (Group set).
type op struct {
	Put   bool
	Peer  directory.Peer // ID only for a removal
	Group *groupOp
}

const (
	opPut         = 1
	opRemove      = 2
	opGroupJoin   = 3
	opGroupLeave  = 4
	maxGroupIDLen = 32
)

func appendOp(b []byte, o op) []byte {
	if g := o.Group; g != nil {
		if g.Join {
			b = append(b, opGroupJoin)
		} else {
			b = append(b, opGroupLeave)
		}
		b = appendBytes(b, []byte(g.Group.DevKey))
		b = append(b, g.Group.ID[:]...)
		b = append(b, g.Peer[:]...)
		b = append(b, g.Addr[:]...)
		if g.Join {
			b = binary.BigEndian.AppendUint64(b, uint64(g.Joined.UnixNano()))
			b = binary.BigEndian.AppendUint64(b, uint64(g.Since.UnixNano()))
		}
		return b
	}
	p := &o.Peer
	if !o.Put {
		b = append(b, opRemove)
		return append(b, p.ID[:]...)
	}
	b = append(b, opPut)
	b = append(b, p.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Since.UnixNano()))
	b = appendBytes(b, []byte(p.Key))
	b = wire.AppendAddress(b, p.Observed, wire.OriginObserved)
	n := min(len(p.Addrs), maxAddrs)
	b = append(b, byte(n))
	for _, a := range p.Addrs[:n] {
		b = wire.AppendAddress(b, a, wire.OriginReported)
	}
	return b
}

func (r *reader) op() op {
	var o op
	kindByte := r.byte()
	switch kindByte {
	case opRemove:
		o.Peer.ID = r.id()
	case opPut:
		o.Put = true
		o.Peer.ID = r.id()
		o.Peer.Since = time.Unix(0, int64(r.u64()))
		o.Peer.Key = string(r.bytes(maxKeyLen))
		o.Peer.Observed = r.addr().AddrPort
		for _, a := range r.addrs() {
			o.Peer.Addrs = append(o.Peer.Addrs, a.AddrPort)
		}
	case opGroupJoin, opGroupLeave:
		g := &groupOp{}
		o.Group = g
		g.Group.DevKey = string(r.bytes(maxKeyLen))
		copy(g.Group.ID[:], r.fixed(maxGroupIDLen))
		g.Peer = r.id()
		g.Addr = r.id()
		if kindByte == opGroupJoin {
			g.Join = true
			g.Joined = time.Unix(0, int64(r.u64()))
			g.Since = time.Unix(0, int64(r.u64()))
		}
	default:
		r.fail(errMalform)
	}
	return o
}

// delta is a run of directory changes with consecutive sequence numbers
// starting at First (the sender's numbering, per epoch).
type delta struct {
	First uint64
	Ops   []op
}

func (d delta) append(b []byte) []byte {
	b = wire.AppendVLU(b, d.First)
	b = wire.AppendVLU(b, uint64(len(d.Ops)))
	for _, o := range d.Ops {
		b = appendOp(b, o)
	}
	return b
}

func parseOps(r *reader) []op {
	n := r.vlu()
	if n > maxOps {
		r.fail(errTooLarge)
		return nil
	}
	var ops []op
	for i := uint64(0); i < n && r.err == nil; i++ {
		ops = append(ops, r.op())
	}
	return ops
}

func parseDelta(b []byte) (delta, error) {
	r := reader{b: b}
	d := delta{First: r.vlu()}
	d.Ops = parseOps(&r)
	if d.First == 0 && len(d.Ops) > 0 {
		r.fail(errMalform) // sequence numbers start at 1
	}
	return d, r.done()
}

// snapPart is one part of a node's snapshot: every peer it holds, as of
// its change Seq, for the request Nonce.
type snapPart struct {
	Nonce uint64
	Seq   uint64
	Last  bool
	Ops   []op // puts
}

func (s snapPart) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, s.Nonce)
	b = wire.AppendVLU(b, s.Seq)
	last := byte(0)
	if s.Last {
		last = 1
	}
	b = append(b, last)
	b = wire.AppendVLU(b, uint64(len(s.Ops)))
	for _, o := range s.Ops {
		b = appendOp(b, o)
	}
	return b
}

func parseSnapPart(b []byte) (snapPart, error) {
	r := reader{b: b}
	s := snapPart{Nonce: r.u64()}
	s.Seq = r.vlu()
	switch r.byte() {
	case 0:
	case 1:
		s.Last = true
	default:
		r.fail(errMalform)
	}
	s.Ops = parseOps(&r)
	for _, o := range s.Ops {
		if !o.Put && (o.Group == nil || !o.Group.Join) {
			r.fail(errMalform) // a snapshot holds peers and memberships only
		}
	}
	return s, r.done()
}

// snapReq asks a node for its snapshot; the parts echo Nonce.
type snapReq struct{ Nonce uint64 }

func (s snapReq) append(b []byte) []byte { return binary.BigEndian.AppendUint64(b, s.Nonce) }

func parseSnapReq(b []byte) (snapReq, error) {
	r := reader{b: b}
	s := snapReq{Nonce: r.u64()}
	return s, r.done()
}

// heartbeat says a node is alive, how far its changes go, and its load.
type heartbeat struct {
	Seq         uint64 // its last change
	Sessions    uint64
	Clients     uint64
	MaxSessions uint64 // 0: no limit
	Started     time.Time
	Draining    bool
	Public      []netip.AddrPort // where clients reach it (--public-address)
	Version     string
}

func (h heartbeat) append(b []byte) []byte {
	b = wire.AppendVLU(b, h.Seq)
	b = wire.AppendVLU(b, h.Sessions)
	b = wire.AppendVLU(b, h.Clients)
	b = wire.AppendVLU(b, h.MaxSessions)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Started.UnixMilli()))
	flags := byte(0)
	if h.Draining {
		flags |= 1
	}
	b = append(b, flags)
	n := min(len(h.Public), maxAddrs)
	b = append(b, byte(n))
	for _, a := range h.Public[:n] {
		b = wire.AppendAddress(b, a, wire.OriginRelay)
	}
	return appendBytes(b, []byte(h.Version))
}

func parseHeartbeat(b []byte) (heartbeat, error) {
	r := reader{b: b}
	h := heartbeat{Seq: r.vlu(), Sessions: r.vlu(), Clients: r.vlu(), MaxSessions: r.vlu()}
	h.Started = time.UnixMilli(int64(r.u64()))
	flags := r.byte()
	if flags&^1 != 0 {
		r.fail(errMalform)
	}
	h.Draining = flags&1 != 0
	for _, a := range r.addrs() {
		h.Public = append(h.Public, a.AddrPort)
	}
	h.Version = string(r.bytes(maxVersion))
	return h, r.done()
}

// introMsg is a directory.Introduction on the wire.
type introMsg directory.Introduction

func (in introMsg) append(b []byte) []byte {
	b = append(b, in.Target[:]...)
	b = appendBytes(b, in.Tag)
	b = appendBytes(b, in.EPD)
	return appendAddrs(b, in.Reply)
}

func parseIntro(b []byte) (directory.Introduction, error) {
	r := reader{b: b}
	in := directory.Introduction{Target: r.id(), Tag: r.bytes(maxTag), EPD: r.bytes(maxEPD), Reply: r.addrs()}
	if r.err == nil && (len(in.Tag) == 0 || len(in.EPD) == 0 || len(in.Reply) == 0) {
		r.fail(errMalform)
	}
	return in, r.done()
}

// relayMsg is a directory.Relay on the wire, with the asking node's
// request number (its reply carries it back).
type relayMsg struct {
	ID uint64
	directory.Relay
}

func (m relayMsg) append(b []byte) []byte {
	b = wire.AppendVLU(b, m.ID)
	b = append(b, m.Target[:]...)
	b = appendBytes(b, []byte(m.Key))
	return appendBytes(b, m.Msg)
}

func parseRelay(b []byte) (relayMsg, error) {
	r := reader{b: b}
	m := relayMsg{ID: r.vlu()}
	m.Target = r.id()
	m.Key = string(r.bytes(maxKeyLen))
	m.Msg = r.bytes(maxRelayMsg)
	return m, r.done()
}

// Relay results on the wire.
const (
	relayOK     = 0
	relayGone   = 1
	relayBehind = 2
)

type relayReply struct {
	ID     uint64
	Result byte
}

func (m relayReply) append(b []byte) []byte { return append(wire.AppendVLU(b, m.ID), m.Result) }

func parseRelayReply(b []byte) (relayReply, error) {
	r := reader{b: b}
	m := relayReply{ID: r.vlu(), Result: r.byte()}
	if m.Result > relayBehind {
		r.fail(errMalform)
	}
	return m, r.done()
}

func relayResult(err error) byte {
	switch {
	case err == nil:
		return relayOK
	case errors.Is(err, directory.ErrBehind):
		return relayBehind
	}
	return relayGone
}

func relayError(code byte) error {
	switch code {
	case relayOK:
		return nil
	case relayBehind:
		return directory.ErrBehind
	}
	return directory.ErrGone
}
