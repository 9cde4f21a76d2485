package flash

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known answers from the research notes (§1.6, §6.1, §8.1, §8.2), computed
// there with Python's hashlib.
func TestServerChannelKnownAnswers(t *testing.T) {
	// §8.1: the join librtmfp sends for G:027f02010101000103010c050e74657374011b00.
	id := [32]byte(unhex(t, "c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9"))
	join := unhex(t, "012115c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9")
	if got := AppendGroupJoin(nil, id); !bytes.Equal(got, join) {
		t.Fatalf("join %x", got)
	}
	got, spec, err := ParseGroupJoin(join, 1024)
	if err != nil || spec || got != id {
		t.Fatalf("parse: %x %v %v", got, spec, err)
	}
	// The old form: the server hashes the text once (a v1 groupspec's ID).
	old := AppendGroupJoinSpec(nil, "G:0101010c050e6f726632")
	if !bytes.Equal(old[:3], []byte{0x01, 0x17, 0x10}) {
		t.Fatalf("old join %x", old)
	}
	got, spec, err = ParseGroupJoin(old, 1024)
	if err != nil || !spec || hex.EncodeToString(got[:]) != "a7b19dcd531386643f069cdfd22e5079361684d7de7cd9893eefd3f873d15309" {
		t.Fatalf("old form: %x %v %v", got, spec, err)
	}
	// §8.2: announcing peer 00 01 … 1f.
	var peer [32]byte
	for i := range peer {
		peer[i] = byte(i)
	}
	want := append([]byte{0x0b}, peer[:]...)
	if m := AppendGroupMember(nil, peer); !bytes.Equal(m, want) {
		t.Fatalf("member %x", m)
	}
	if p, ok := ParseGroupMember(want); !ok || p != peer {
		t.Fatal("member round trip")
	}
	// §6.1: group addresses.
	for _, c := range []struct {
		first byte
		addr  string
	}{
		{0x00, "b899a498e581c1b05a163df2329c20db35411de8eeeed68e12ecdc2ba9e15ebc"},
		{0x20, "7a13d1a576c9389bd06abb2780d567e322bfd45b3b74026622b256b9f9018b20"},
		{0x40, "aebcb0ed5b0a3372fddb7f66c721791350a1ba6d1d44e1850a52e1548ac9453a"},
	} {
		var p [32]byte
		for i := range p {
			p[i] = c.first + byte(i)
		}
		if a := GroupAddress(p); hex.EncodeToString(a[:]) != c.addr {
			t.Errorf("address of %x: %x", p, a)
		}
	}
}

func TestParseGroupJoinRejects(t *testing.T) {
	id := make([]byte, 32)
	for _, c := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrNotJoin},
		{"announce", append([]byte{0x0b}, id...), ErrNotJoin},
		{"no length", []byte{0x01}, ErrJoinTruncated},
		{"zero length", []byte{0x01, 0x00}, ErrJoinTruncated},
		{"truncated ID", append([]byte{0x01, 0x21, 0x15}, id[:20]...), ErrJoinTruncated},
		{"bad VLU", []byte{0x01, 0x80}, ErrJoinTruncated},
		{"short ID", append([]byte{0x01, 0x11, 0x15}, id[:16]...), ErrJoinLength},
		{"unknown kind", append([]byte{0x01, 0x21, 0x16}, id...), ErrJoinKind},
		{"empty groupspec", []byte{0x01, 0x01, 0x10}, ErrGroupspecSize},
		{"oversized groupspec", AppendGroupJoinSpec(nil, string(bytes.Repeat([]byte("a"), 65))), ErrGroupspecSize},
	} {
		if _, _, err := ParseGroupJoin(c.msg, 64); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// Trailing bytes after the declared length are ignored.
	msg := append(AppendGroupJoin(nil, [32]byte{1}), 0xff, 0xee)
	if got, _, err := ParseGroupJoin(msg, 64); err != nil || got != [32]byte{1} {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func FuzzParseGroupJoin(f *testing.F) {
	f.Add(AppendGroupJoin(nil, [32]byte{1, 2, 3}))
	f.Add(AppendGroupJoinSpec(nil, "G:027f02010101000103010c050e74657374011b00"))
	f.Add([]byte{0x01, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x10})
	f.Add([]byte{0x0b})
	f.Fuzz(func(t *testing.T, msg []byte) {
		id, spec, err := ParseGroupJoin(msg, 256)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to a join that parses to the same ID.
		var again []byte
		if spec {
			l, n, _ := wire.ParseVLU(msg[1:])
			again = AppendGroupJoinSpec(nil, string(msg[1+n+1:1+n+int(l)]))
		} else {
			again = AppendGroupJoin(nil, id)
		}
		id2, spec2, err := ParseGroupJoin(again, 256)
		if err != nil || id2 != id || spec2 != spec {
			t.Fatalf("%x: re-encoded %x gives %x %v %v", msg, again, id2, spec2, err)
		}
	})
}
