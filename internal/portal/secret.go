package portal

import (
	"crypto/sha256"
	"strings"

	"github.com/stratus-rtmfp/stratus/store"
)

// Account secrets are "s1." + the account ID + "." + 64 random hex
// digits. The ID finds the account; only the SHA-256 of the random part
// is stored.

// newSecret draws a secret's random part.
func newSecret() (random string) { return randomHex(32) }

// formatSecret is the secret a developer signs in with.
func formatSecret(account, random string) string { return "s1." + account + "." + random }

// secretHash is what the store keeps of a secret's random part. (A
// variable so that a test can count the hashes.)
var secretHash = func(random string) []byte {
	h := sha256.Sum256([]byte(random))
	return h[:]
}

// splitSecret returns the account ID and random part of a secret.
func splitSecret(secret string) (id, random string, ok bool) {
	if len(secret) > maxSecretLen {
		return "", "", false
	}
	parts := strings.Split(secret, ".")
	if len(parts) != 3 || parts[0] != "s1" || !store.ValidAccountID(parts[1]) || len(parts[2]) != 64 {
		return "", "", false
	}
	return parts[1], parts[2], true
}
