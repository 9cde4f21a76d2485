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

func (p policyOpts) get() handshake.Policy {
	var pol handshake.Policy
	if *p.hmac == "require" {
		pol.HMACSendAlways, pol.HMACRecvRequired = true, true
	}
	if *p.seq == "require" {
		pol.SeqSendAlways, pol.SeqRecvRequired = true, true
	}
	return pol
}
