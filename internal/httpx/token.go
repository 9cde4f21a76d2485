package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Token is a secret a request must present (the admin token), kept as
// its SHA-256: comparing digests in constant time tells nothing through
// timing about how much of a guess was right, nor the token's length.
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// NewToken makes a Token; an empty one matches nothing (fail closed).
func NewToken(secret string) Token {
	return Token{sum: sha256.Sum256([]byte(secret)), set: secret != ""}
}

// Matches reports whether got is the token.
func (t Token) Matches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 && t.set
}
