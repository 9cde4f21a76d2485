package exchange

import "errors"

// Errors a registration or lookup can end with.
var (
	ErrBadName      = errors.New("exchange: the name must be 1 to 128 bytes of printable UTF-8")
	ErrBadPeerID    = errors.New("exchange: a peer ID is 64 hex digits")
	ErrNotConnected = errors.New("exchange: that peer ID is not connected with this developer key")
	ErrTaken        = errors.New("exchange: the name is held by another peer that is still connected")
	ErrKeyFull      = errors.New("exchange: this developer key has too many names registered")
	ErrPeerFull     = errors.New("exchange: this peer has too many names registered")
	ErrHeld         = errors.New("exchange: the name is held by a connected peer; it is removed when that session ends")
)

// Key errors, from Handler.CheckKey.
var (
	ErrUnknownKey = errors.New("exchange: unknown developer key")
	ErrKeyRefused = errors.New("exchange: developer key revoked or suspended")
)
