package flash

import (
	"crypto/sha256"
	"errors"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// The NetGroup server channel (reference §7.2-7.3): a client whose
// GroupSpecifier has serverChannelEnabled opens a flow with GroupMetadata
// and sends one raw message (no TC header) naming the group; the server
// answers on its own "GC" flow, associated with the client's, with one
// raw message per peer the client should connect to.

// Server channel message types.
const (
	GroupJoin   = 0x01 // client → server: 01 ‖ VLU length ‖ kind ‖ value
	GroupMember = 0x0b // server → client: 0b ‖ peer ID
)

// Kinds of group join.
const (
	JoinGroupID   = 0x15 // the 32-byte group ID (Flash 10.1+, librtmfp)
	JoinGroupspec = 0x10 // the groupspec text; the server hashes it once (older Flash)
)

// Errors of the server channel parser.
var (
	ErrNotJoin       = errors.New("flash: not a group join")
	ErrJoinTruncated = errors.New("flash: truncated group join")
	ErrJoinKind      = errors.New("flash: unknown group join kind")
	ErrJoinLength    = errors.New("flash: group ID is not 32 bytes")
	ErrGroupspecSize = errors.New("flash: groupspec empty or too large")
)

// ParseGroupJoin reads a join message and returns the group ID: the 32
// bytes of kind 0x15, or SHA-256 of the groupspec text of kind 0x10
// (hashed once, as MonaServer and Cumulus do; the text is at most
// maxSpec bytes). Bytes after the declared length are ignored, as the
// other servers ignore them. fromSpec says which form it was.
func ParseGroupJoin(msg []byte, maxSpec int) (id [32]byte, fromSpec bool, err error) {
	if len(msg) == 0 || msg[0] != GroupJoin {
		return id, false, ErrNotJoin
	}
	l, n, err := wire.ParseVLU(msg[1:])
	if err != nil {
		return id, false, ErrJoinTruncated
	}
	body := msg[1+n:]
	if l == 0 || l > uint64(len(body)) {
		return id, false, ErrJoinTruncated
	}
	kind, value := body[0], body[1:l]
	switch kind {
	case JoinGroupID:
		if len(value) != 32 {
			return id, false, ErrJoinLength
		}
		return [32]byte(value), false, nil
	case JoinGroupspec:
		if len(value) == 0 || len(value) > maxSpec {
			return id, true, ErrGroupspecSize
		}
		return sha256.Sum256(value), true, nil
	}
	return id, false, ErrJoinKind
}

// AppendGroupJoin appends a join by group ID: 01 21 15 ‖ id.
func AppendGroupJoin(b []byte, id [32]byte) []byte {
	b = append(b, GroupJoin, 33, JoinGroupID)
	return append(b, id[:]...)
}

// AppendGroupJoinSpec appends a join by groupspec text (the old form).
func AppendGroupJoinSpec(b []byte, spec string) []byte {
	b = append(b, GroupJoin)
	b = wire.AppendVLU(b, uint64(1+len(spec)))
	b = append(b, JoinGroupspec)
	return append(b, spec...)
}

// AppendGroupMember appends the server's "connect to this peer" message:
// 0b ‖ peer ID.
func AppendGroupMember(b []byte, peer [32]byte) []byte {
	b = append(b, GroupMember)
	return append(b, peer[:]...)
}

// ParseGroupMember reads a 0b message; ok is false for anything else.
func ParseGroupMember(msg []byte) (peer [32]byte, ok bool) {
	if len(msg) != 33 || msg[0] != GroupMember {
		return peer, false
	}
	return [32]byte(msg[1:]), true
}

// GroupAddress is a peer's place on a group's ring: SHA-256 of its raw
// peer ID (21 0f ‖ peer ID). Members are ordered by it (reference §7,
// research notes §6.1).
func GroupAddress(peer [32]byte) [32]byte {
	var raw [34]byte
	raw[0], raw[1] = 0x21, 0x0f
	copy(raw[2:], peer[:])
	return sha256.Sum256(raw[:])
}
