package portal

import (
	"strings"
	"testing"
)

// Signing in with the secret of an account that does not exist costs the
// same hash as with a wrong secret of one that does, so the time taken
// does not tell whether the account exists.
func TestSigninHashesForUnknownAccounts(t *testing.T) {
	e := newEnv(t, nil)
	_, _, out := e.signedIn()
	hashes := 0
	saved := secretHash
	secretHash = func(random string) []byte { hashes++; return saved(random) }
	defer func() { secretHash = saved }()
	for _, secret := range []string{
		"s1." + out.Account + "." + strings.Repeat("0", 64), // a known account, a wrong secret
		"s1.0123456789abcdef." + strings.Repeat("0", 64),    // no such account
	} {
		hashes = 0
		if _, ok := e.port.checkSecret(secret); ok {
			t.Fatalf("%s signed in", secret)
		}
		if hashes != 1 {
			t.Fatalf("%s: %d hashes computed, want 1", secret, hashes)
		}
	}
}
