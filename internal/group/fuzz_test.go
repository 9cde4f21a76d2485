package group

import (
	"bytes"
	"testing"
)

// FuzzParseSpec: any string either fails or parses into a spec whose
// Flash encoding parses back to the same settings.
func FuzzParseSpec(f *testing.F) {
	f.Add("G:027f02010101000103010c050e74657374011b00")
	f.Add("G:027f02010321072bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b010c050e63686174000717736563726574")
	f.Add("G:010c020e6e00070ae00000fe814b")
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		id, ierr := IdentityOf(s)
		if err != nil {
			return
		}
		if ierr != nil || len(id.Text) > len(s) {
			t.Fatalf("parsed but no identity: %v", ierr)
		}
		again, err := ParseSpec(sp.Encode(true))
		if err != nil {
			t.Fatalf("re-encoding %q: %v", sp.Encode(true), err)
		}
		if again.Encode(true) != sp.Encode(true) {
			t.Fatalf("not stable: %q vs %q", again.Encode(true), sp.Encode(true))
		}
	})
}

// FuzzParseGroupMessages feeds every group message parser the same bytes:
// none may panic, and what parses re-encodes to a message that parses the
// same way.
func FuzzParseGroupMessages(f *testing.F) {
	f.Add(AppendInit(nil, Init{GroupHex: "c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9"}))
	f.Add(AppendReport(nil, Report{Peers: []ReportPeer{{Age: 3}}}))
	f.Add([]byte{0x0a, 0x01, 0x05, 0x08, 0x0d, 0x02, 1, 2, 3, 4, 0, 1, 0x82, 0x0a, 0, 0})
	f.Add(AppendData(nil, "a note"))
	f.Add([]byte{0x02, 0x00, 0x02, 'h', 'i', 1, 2, 3})
	f.Add(AppendRouted(nil, Routed{Mode: ModeNearest, Body: []byte{0x05}}))
	f.Fuzz(func(t *testing.T, m []byte) {
		if in, err := ParseInit(m); err == nil {
			if back, err := ParseInit(AppendInit(nil, in)); err != nil || back.Key != in.Key || back.Target != in.Target {
				t.Fatalf("init round trip: %v", err)
			}
		}
		if rep, err := ParseReport(m); err == nil {
			back, err := ParseReport(AppendReport(nil, rep))
			if err != nil || len(back.Peers) != len(rep.Peers) {
				t.Fatalf("report round trip: %v (%d vs %d peers)", err, len(back.Peers), len(rep.Peers))
			}
		}
		if note, err := ParseData(m); err == nil && note != "" {
			if back, err := ParseData(AppendData(nil, note)); err != nil || back != note {
				t.Fatal("data round trip")
			}
		}
		if r, err := ParseRouted(m); err == nil {
			if !bytes.Equal(AppendRouted(nil, r), m) {
				t.Fatal("routed round trip")
			}
			r.Value()
		}
		ParsePost(m)
	})
}
