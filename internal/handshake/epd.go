package handshake

import (
	"bytes"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Endpoint discriminator option types (RFC 7425 §4.4.2).
const (
	EPDHostname    = 0x00
	EPDAncillary   = 0x0a
	EPDFingerprint = 0x0f
)

// MaxEPDLen bounds accepted EPDs.
const MaxEPDLen = 2048

// EPD is a parsed endpoint discriminator. Options other than the three
// known ones are kept only in Raw.
type EPD struct {
	Raw          []byte
	Fingerprint  []byte // present iff HasFingerprint; selects only if 32 bytes
	Hostname     []byte
	Ancillary    []byte // Flash: the rtmfp:// URI given to NetConnection.connect
	HasFP        bool
	HasHostname  bool
	HasAncillary bool
}

// ParseEPD decodes an EPD (an unterminated option sequence).
func ParseEPD(raw []byte) (EPD, error) {
	if len(raw) > MaxEPDLen {
		return EPD{}, ErrEPD
	}
	e := EPD{Raw: raw}
	off := 0
	for off < len(raw) {
		o, marker, n, err := wire.ParseOption(raw[off:])
		if err != nil {
			return EPD{}, ErrEPD
		}
		off += n
		if marker {
			continue
		}
		switch o.Type {
		case EPDFingerprint:
			if !e.HasFP {
				e.Fingerprint, e.HasFP = o.Value, true
			}
		case EPDHostname:
			if !e.HasHostname {
				e.Hostname, e.HasHostname = o.Value, true
			}
		case EPDAncillary:
			if !e.HasAncillary {
				e.Ancillary, e.HasAncillary = o.Value, true
			}
		}
	}
	return e, nil
}

// FingerprintEPD is the canonical EPD of an endpoint: 21 0f <fingerprint>.
func FingerprintEPD(fp [32]byte) []byte { return wire.AppendOption(nil, EPDFingerprint, fp[:]) }

// AncillaryEPD is the EPD Flash sends to a server: one ancillary-data option
// holding the URI.
func AncillaryEPD(uri string) []byte { return wire.AppendOption(nil, EPDAncillary, []byte(uri)) }

// PeerID returns the 32-byte fingerprint the EPD names, if any.
func (e EPD) PeerID() ([32]byte, bool) {
	if !e.HasFP || len(e.Fingerprint) != 32 {
		return [32]byte{}, false
	}
	return [32]byte(e.Fingerprint), true
}

// Selects reports whether the EPD selects an endpoint with certificate c
// (RFC 7425 §4.4.2, as rtmfp-cpp's isSelectedByEPD).
func (e EPD) Selects(c *Certificate) bool {
	if e.HasFP {
		fp := c.Fingerprint()
		return len(e.Fingerprint) == 32 && bytes.Equal(e.Fingerprint, fp[:])
	}
	if e.HasHostname && (!c.HasHostname || !bytes.Equal(e.Hostname, c.Hostname)) {
		return false
	}
	if e.HasAncillary {
		return c.AcceptsAncillary
	}
	return e.HasHostname
}
