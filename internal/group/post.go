package group

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/stratus-rtmfp/stratus/amf"
)

// Posting (docs/netgroup.md §4). A post travels on a GR 19 flow as one
// message: the posted value in AMF0 (objects may switch to AMF3), then an
// optional stamp. librtmfp decodes the first value and logs strings and
// numbers; it ignores what follows. Stratus posts carry an 8-byte random
// stamp so that two posts of the same value are two messages. The message
// ID is the SHA-256 of the whole message, in hex: for a post without a
// stamp that is the SHA-256 of the serialized value, Flash's messageID.
const (
	// MaxPost bounds a post message; larger ones are dropped.
	MaxPost = 64 << 10
	// StampLen is the length of the stamp Stratus appends.
	StampLen = 8
	// Post key messages (first byte) that may share the posting flows;
	// they are read and ignored.
	postKeyAnnounce = 0x30
	postKeyRequest  = 0x3a
)

// AppendPost appends a post: the AMF0 value, then the stamp.
func AppendPost(b []byte, v any, stamp []byte) ([]byte, error) {
	b, err := amf.AppendAMF0(b, v)
	if err != nil {
		return nil, err
	}
	return append(b, stamp...), nil
}

// PostID is a post message's ID: hex SHA-256 of the message.
func PostID(m []byte) string {
	sum := sha256.Sum256(m)
	return hex.EncodeToString(sum[:])
}

// ParsePost decodes a post message: its value and ID. ok is false for the
// key messages (30, 3a) that carry no value, err non-nil for anything
// malformed or too long.
func ParsePost(m []byte) (v any, id string, ok bool, err error) {
	if len(m) > MaxPost {
		return nil, "", false, ErrTooLong
	}
	if len(m) == 0 {
		return nil, "", false, ErrShort
	}
	if m[0] == postKeyAnnounce || m[0] == postKeyRequest {
		return nil, "", false, nil
	}
	v, err = amf.NewDecoder(m).Next()
	if err != nil {
		return nil, "", false, err
	}
	return v, PostID(m), true, nil
}
