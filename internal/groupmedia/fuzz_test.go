package groupmedia

import (
	"bytes"
	"testing"
)

// FuzzMediaInfo: announcements and end messages; what parses re-encodes
// to a message that parses the same.
func FuzzMediaInfo(f *testing.F) {
	f.Add(AppendAnnounce(nil, Announce{Name: "live", Params: DefaultParams}))
	f.Add(AppendAnnounce(nil, Announce{Name: "x", Params: Params{SendToAll: true, WindowDuration: 1}}))
	f.Add(AppendEnd(nil, 1235))
	f.Fuzz(func(t *testing.T, m []byte) {
		a, end, err := ParseMediaInfo(m)
		if err != nil {
			return
		}
		if a == nil {
			if _, back, err := ParseMediaInfo(AppendEnd(nil, end)); err != nil || back != end {
				t.Fatalf("end %d: %d %v", end, back, err)
			}
			return
		}
		back, _, err := ParseMediaInfo(AppendAnnounce(nil, *a))
		if err != nil || back.Name != a.Name || back.Key != a.Key || back.Params != a.Params {
			t.Fatalf("%+v vs %+v: %v", a, back, err)
		}
	})
}

// FuzzMap: a map's Has agrees with the map re-encoded from it.
func FuzzMap(f *testing.F) {
	f.Add([]byte{0x22, 0x14, 0xff, 0xff, 0x07})
	f.Add([]byte{0x22, 0x78, 0xfb, 0xfd, 0x0f})
	f.Add([]byte{0x22, 0x05})
	f.Fuzz(func(t *testing.T, m []byte) {
		mp, err := ParseMap(m)
		if err != nil || len(mp.Bits) > 512 {
			return
		}
		first := mp.First()
		back, err := ParseMap(AppendMap(nil, first, mp.Last, mp.Has))
		if err != nil {
			t.Fatal(err)
		}
		for id := first; id <= mp.Last && id < first+4096; id++ {
			if back.Has(id) != mp.Has(id) {
				t.Fatalf("fragment %d", id)
			}
		}
	})
}

// FuzzControl: push and pull requests.
func FuzzControl(f *testing.F) {
	f.Add([]byte{0x23, 0x05})
	f.Add([]byte{0x2b, 0x82, 0x2c})
	f.Fuzz(func(t *testing.T, m []byte) {
		if mask, err := ParsePush(m); err == nil && !bytes.Equal(AppendPush(nil, mask), m[:2]) {
			t.Fatal("push")
		}
		if id, err := ParsePull(m); err == nil {
			if back, err := ParsePull(AppendPull(nil, id)); err != nil || back != id {
				t.Fatal("pull")
			}
		}
	})
}

// FuzzFragment: fragments re-encode to fragments that parse the same
// (a 30 without its remaining byte comes back with one).
func FuzzFragment(f *testing.F) {
	f.Add(AppendFragment(nil, Fragment{Marker: MarkerWhole, ID: 42, Type: 8, Time: 1000, Payload: []byte{0xaf, 1}}))
	f.Add(AppendFragment(nil, Fragment{Marker: MarkerFirst, ID: 300, Remaining: 2, Type: 9, Payload: []byte{0x17}}))
	f.Add([]byte{0x10, 0x2d, 0x01, 0xff})
	f.Add([]byte{0x00, 0x2e, 0xfe})
	f.Add([]byte{0x30, 0x82, 0x2c, 0x12, 0, 0, 3, 0xe8})
	f.Fuzz(func(t *testing.T, m []byte) {
		fr, err := ParseFragment(m)
		if err != nil || fr.Marker == MarkerFirst && fr.Remaining == 0 {
			return // (a 30 without its count is read, never written)
		}
		back, err := ParseFragment(AppendFragment(nil, fr))
		if err != nil || back.ID != fr.ID || back.Marker != fr.Marker || back.Time != fr.Time || !bytes.Equal(back.Payload, fr.Payload) {
			t.Fatalf("%+v vs %+v: %v", fr, back, err)
		}
	})
}

// FuzzSplit: cutting and concatenating gives the message back.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("hello"), uint16(3000))
	f.Fuzz(func(t *testing.T, seed []byte, n uint16) {
		if len(seed) == 0 {
			return
		}
		msg := bytes.Repeat(seed, int(n)/len(seed)+1)[:n]
		frags, err := Split(9, 7, msg, 5)
		if err != nil {
			t.Fatal(err)
		}
		var whole []byte
		for i, fr := range frags {
			if fr.ID != uint64(5+i) || len(fr.Payload) > MaxPayload {
				t.Fatal("numbering or size")
			}
			whole = append(whole, fr.Payload...)
		}
		if !bytes.Equal(whole, msg) {
			t.Fatal("concatenation")
		}
	})
}
