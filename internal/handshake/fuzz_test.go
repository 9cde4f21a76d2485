package handshake

import (
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func FuzzCertificate(f *testing.F) {
	f.Add(testvec.Get(f, "fp117_client_cert"))
	f.Add(testvec.Get(f, "fp117_server_cert"))
	f.Add(append(testvec.Get(f, "fp117_server_cert"), 0, 0x05, 0x42, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertificate(b)
		if err != nil {
			return
		}
		if len(c.Canonical) > len(b) || len(c.EphemeralGroups) > 16 || len(c.StaticKeys) > 16 {
			t.Fatal("certificate parse out of bounds")
		}
		_ = c.Fingerprint()
		epd, _ := ParseEPD(FingerprintEPD(c.Fingerprint()))
		if !epd.Selects(c) {
			t.Fatal("canonical EPD does not select its own certificate")
		}
	})
}

func FuzzEPD(f *testing.F) {
	f.Add(AncillaryEPD("rtmfp://cc.rtmfp.net"))
	f.Add(FingerprintEPD([32]byte{1, 2, 3}))
	f.Add([]byte("\x06\x00host\x00\x03\x0aab"))
	id, _ := NewServerIdentity(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEPD(b)
		if err != nil {
			return
		}
		_ = e.Selects(id.Parsed)
		_, _ = e.PeerID()
	})
}

func FuzzComponent(f *testing.F) {
	f.Add(testvec.Get(f, "fp117_skic"))
	f.Add(testvec.Get(f, "fp117_skrc"))
	f.Add(testvec.Hex(f, "021d0e 031a0710 021e07"))
	id, _ := NewServerIdentity(nil)
	client, _ := NewClientIdentity(nil)
	r := &Responder{ID: id}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseComponent(b); err != nil {
			return
		}
		// The responder must refuse or accept any SKIC without panicking.
		_, _ = r.Respond(wire.IIKeying{ISID: 1, Certificate: client.Certificate, SKIC: b})
	})
}
