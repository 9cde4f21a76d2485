package main

import (
	"flag"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// policyOpts are the RFC 7425 packet-feature flags shared by server and
// probe.
type policyOpts struct{ hmac, seq *string }

func policyFlags(fs *flag.FlagSet) policyOpts {
	return policyOpts{
		hmac: fs.String("hmac", "offer", "packet HMAC (RFC 7425): offer (send on request, what Flash does) or require"),
		seq:  fs.String("seq", "offer", "session sequence numbers (RFC 7425): offer or require"),
	}
}

// requireHMAC and requireSeq say whether the flags asked for "require".
func (p policyOpts) requireHMAC() bool { return *p.hmac == "require" }
func (p policyOpts) requireSeq() bool  { return *p.seq == "require" }

func (p policyOpts) get() handshake.Policy {
	return handshake.Requiring(p.requireHMAC(), p.requireSeq())
}
