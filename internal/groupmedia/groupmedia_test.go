package groupmedia

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seq(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

const keyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// docs/netgroup-media.md §8.2 and §8.3.
func TestAnnounceKnownAnswers(t *testing.T) {
	a := Announce{Name: "live", Key: [32]byte(seq(0, 32)), Params: DefaultParams}
	want := unhex(t, "21 05 00 6c 69 76 65 21 01"+keyHex+"01 02 03 03 be 40 04 04 92 a7 60 02 05 64 03 07 93 44")
	if got := AppendAnnounce(nil, a); !bytes.Equal(got, want) || len(got) != 59 {
		t.Fatalf("got %x", got)
	}
	b := Announce{Name: "live", Key: a.Key, Params: Params{WindowDuration: 4000, UpdatePeriod: 200, FetchPeriod: 1000, SendToAll: true}}
	want = unhex(t, "21 05 00 6c 69 76 65 21 01"+keyHex+"01 02 01 06 03 03 9f 20 04 04 92 a7 60 03 05 81 48 03 07 87 68")
	if got := AppendAnnounce(nil, b); !bytes.Equal(got, want) || len(got) != 62 {
		t.Fatalf("got %x", got)
	}
	for _, c := range []Announce{a, b} {
		got, end, err := ParseMediaInfo(AppendAnnounce(nil, c))
		if err != nil || end != 0 || got.Name != "live" || got.Key != c.Key || got.Params.WindowDuration != c.Params.WindowDuration ||
			got.Params.FetchPeriod != c.Params.FetchPeriod || got.Params.UpdatePeriod != c.Params.UpdatePeriod ||
			got.Params.SendToAll != c.Params.SendToAll || got.Params.Option04 != 300000 {
			t.Fatalf("%+v %v", got, err)
		}
	}
	// Without parameters: Flash's defaults.
	bare := unhex(t, "21 05 00 6c 69 76 65 21 01"+keyHex)
	if got, _, err := ParseMediaInfo(bare); err != nil || got.Params != DefaultParams {
		t.Fatal(err)
	}
	// §8.4: end of stream after fragment 1234.
	if got := AppendEnd(nil, 1235); !bytes.Equal(got, unhex(t, "21 89 53")) {
		t.Fatalf("%x", got)
	}
	if a, end, err := ParseMediaInfo(unhex(t, "21 89 53")); a != nil || end != 1235 || err != nil {
		t.Fatal(a, end, err)
	}
	if _, _, err := ParseMediaInfo(unhex(t, "21 01 00 21 01"+keyHex)); err == nil {
		t.Fatal("nameless announcement accepted")
	}
}

// §8.5.
func TestMapKnownAnswers(t *testing.T) {
	all := func(uint64) bool { return true }
	if got := AppendMap(nil, 1, 20, all); !bytes.Equal(got, unhex(t, "22 14 ff ff 07")) {
		t.Fatalf("%x", got)
	}
	have := func(id uint64) bool { return id != 110 && id != 117 }
	if got := AppendMap(nil, 100, 120, have); !bytes.Equal(got, unhex(t, "22 78 fb fd 0f")) {
		t.Fatalf("%x", got)
	}
	if got := AppendMap(nil, 5, 5, all); !bytes.Equal(got, unhex(t, "22 05")) {
		t.Fatalf("%x", got)
	}
	m, err := ParseMap(unhex(t, "22 78 fb fd 0f"))
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(95); id <= 125; id++ {
		want := id >= 100 && id <= 120 && id != 110 && id != 117
		if m.Has(id) != want {
			t.Errorf("fragment %d: %v", id, m.Has(id))
		}
	}
	if m.First() != 96 { // three bytes describe 24 fragments below 120
		t.Fatal(m.First())
	}
	if one, _ := ParseMap(unhex(t, "22 05")); !one.Has(5) || one.Has(4) {
		t.Fatal("single-fragment map")
	}
}

// §8.6, §8.7.
func TestPushPullKnownAnswers(t *testing.T) {
	if got := AppendPush(nil, 0x05); !bytes.Equal(got, []byte{0x23, 0x05}) {
		t.Fatal(got)
	}
	if got := AppendPull(nil, 300); !bytes.Equal(got, unhex(t, "2b 82 2c")) {
		t.Fatalf("%x", got)
	}
	if id, err := ParsePull(unhex(t, "2b 82 2c")); id != 300 || err != nil {
		t.Fatal(id, err)
	}
	if m, err := ParsePush([]byte{0x23, 0x00}); m != 0 || err != nil {
		t.Fatal(m, err)
	}
}

// §8.8, §8.9.
func TestFragmentKnownAnswers(t *testing.T) {
	aac := unhex(t, "af 01 21 10 04 60 8c 1c")
	f := Fragment{Marker: MarkerWhole, ID: 42, Type: 0x08, Time: 1000, Payload: aac}
	want := unhex(t, "20 2a 08 00 00 03 e8 af 01 21 10 04 60 8c 1c")
	if got := AppendFragment(nil, f); !bytes.Equal(got, want) {
		t.Fatalf("%x", got)
	}
	data := unhex(t, "20 2f 0f 00 00 03 e8 00 02 00 04 74 65 73 74 02 00 05 68 65 6c 6c 6f")
	if g, err := ParseFragment(data); err != nil || g.ID != 47 || g.Type != 0x0f || g.Time != 1000 || g.Payload[0] != 0 {
		t.Fatalf("%+v %v", g, err)
	}
	// A 2000-byte keyframe from fragment 44: 959 + 959 + 82.
	msg := append(unhex(t, "17 01 00 00 00 00 00 07 c7 65"), seq(0, 1990)...)
	frags, err := Split(0x09, 1000, msg, 44)
	if err != nil || len(frags) != 3 {
		t.Fatal(err)
	}
	enc := [][]byte{AppendFragment(nil, frags[0]), AppendFragment(nil, frags[1]), AppendFragment(nil, frags[2])}
	if !bytes.HasPrefix(enc[0], unhex(t, "30 2c 02 09 00 00 03 e8 17 01 00 00 00 00 00 07 c7 65")) || len(enc[0]) != 967 {
		t.Fatalf("%x… (%d)", enc[0][:20], len(enc[0]))
	}
	if !bytes.HasPrefix(enc[1], unhex(t, "10 2d 01")) || len(enc[1]) != 962 {
		t.Fatalf("%x", enc[1][:3])
	}
	if !bytes.HasPrefix(enc[2], unhex(t, "00 2e")) || len(enc[2]) != 84 {
		t.Fatalf("%x", enc[2][:3])
	}
	var whole []byte
	for i, e := range enc {
		g, err := ParseFragment(e)
		if err != nil || g.ID != uint64(44+i) || g.Remaining != uint8(2-i) {
			t.Fatalf("fragment %d: %+v %v", i, g, err)
		}
		whole = append(whole, g.Payload...)
	}
	if !bytes.Equal(whole, msg) {
		t.Fatal("payloads do not concatenate to the message")
	}
	// Fragment IDs of two bytes, and a 30 without its remaining byte.
	if g, err := ParseFragment(unhex(t, "30 82 2c 09 00 00 03 e8 17 01")); err != nil || g.ID != 300 || g.Type != 0x09 || g.Remaining != 0 || g.Time != 1000 {
		t.Fatalf("%+v %v", g, err)
	}
	if _, err := Split(0x09, 0, make([]byte, MaxMessage+1), 1); err == nil {
		t.Fatal("oversized message cut")
	}
	if fs, _ := Split(0x09, 0, nil, 1); fs != nil {
		t.Fatal("empty message cut")
	}
}
