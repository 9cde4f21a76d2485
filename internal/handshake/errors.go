package handshake

import "errors"

// Sentinel errors. A responder drops the offending packet; an initiator
// ignores it and keeps retransmitting until its own timeout.
var (
	ErrBadPublicKey   = errors.New("handshake: far DH public key fails validation")
	ErrCertificate    = errors.New("handshake: malformed certificate")
	ErrNoCommonGroup  = errors.New("handshake: no common Diffie-Hellman group")
	ErrKeying         = errors.New("handshake: malformed keying component")
	ErrNegotiation    = errors.New("handshake: far end requires a feature we cannot provide")
	ErrCookie         = errors.New("handshake: invalid or expired cookie")
	ErrCookieAddress  = errors.New("handshake: cookie bound to another address")
	ErrEPD            = errors.New("handshake: malformed endpoint discriminator")
	ErrNotSelected    = errors.New("handshake: certificate not selected by the endpoint discriminator")
	ErrHMACLength     = errors.New("handshake: HMAC length out of range")
	ErrUnsupported    = errors.New("handshake: unsupported keying mode")
	ErrUnknownSession = errors.New("handshake: no matching opening session")
)
