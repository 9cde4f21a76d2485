package cluster

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
)

var codecKey = []byte("0123456789abcdef0123456789abcdef")

func samplePeer() directory.Peer {
	var id [32]byte
	copy(id[:], "a peer id of thirty-two bytes...")
	return directory.Peer{ID: id, Key: "7d8e660a6cbf71bab35a0781-c086fb40c6fb", Since: time.Unix(1700000000, 123456789),
		Observed: netip.MustParseAddrPort("198.51.100.7:40000"),
		Addrs:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:5000"), netip.MustParseAddrPort("[2001:db8::5]:5000")}}
}

// Every message kind survives sealing and opening, and its body parses
// back to what was appended.
func TestCodecRoundTrip(t *testing.T) {
	p := samplePeer()
	g := membership.GroupKey{DevKey: "live", ID: [32]byte{1, 2, 3}}
	join := groupOp{Join: true, Group: g, Peer: p.ID, Addr: [32]byte{9, 8, 7}, Joined: time.Unix(1700000000, 42), Since: time.Unix(1699999990, 7)}
	leave := groupOp{Group: g, Peer: p.ID, Addr: [32]byte{9, 8, 7}}
	bodies := []struct {
		name   string
		append func([]byte) []byte
		parse  func([]byte) (any, error)
		want   any
	}{
		{"delta", delta{First: 7, Ops: []op{{Put: true, Peer: p}, {Peer: directory.Peer{ID: p.ID}}, {Group: &join}, {Group: &leave}}}.append,
			func(b []byte) (any, error) { return parseDelta(b) },
			delta{First: 7, Ops: []op{{Put: true, Peer: p}, {Peer: directory.Peer{ID: p.ID}}, {Group: &join}, {Group: &leave}}}},
		{"snapPart", snapPart{Nonce: 99, Seq: 12, Last: true, Ops: []op{{Put: true, Peer: p}, {Group: &join}}}.append,
			func(b []byte) (any, error) { return parseSnapPart(b) },
			snapPart{Nonce: 99, Seq: 12, Last: true, Ops: []op{{Put: true, Peer: p}, {Group: &join}}}},
		{"snapReq", snapReq{Nonce: 5}.append, func(b []byte) (any, error) { return parseSnapReq(b) }, snapReq{Nonce: 5}},
		{"heartbeat", heartbeat{Seq: 3, Sessions: 10, Clients: 9, MaxSessions: 100, Started: time.UnixMilli(1700000000123), Draining: true,
			Public: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:1935")}, Version: "v1"}.append,
			func(b []byte) (any, error) { return parseHeartbeat(b) },
			heartbeat{Seq: 3, Sessions: 10, Clients: 9, MaxSessions: 100, Started: time.UnixMilli(1700000000123), Draining: true,
				Public: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:1935")}, Version: "v1"}},
		{"intro", introMsg{Target: p.ID, EPD: []byte{0x21, 0x0f}, Tag: []byte("0123456789abcdef"),
			Reply: []directory.Address{{AddrPort: netip.MustParseAddrPort("203.0.113.9:6000"), Origin: 2}}}.append,
			func(b []byte) (any, error) { return parseIntro(b) },
			directory.Introduction{Target: p.ID, EPD: []byte{0x21, 0x0f}, Tag: []byte("0123456789abcdef"),
				Reply: []directory.Address{{AddrPort: netip.MustParseAddrPort("203.0.113.9:6000"), Origin: 2}}}},
		{"relay", relayMsg{ID: 42, Relay: directory.Relay{Target: p.ID, Key: "k", Msg: []byte("onRelay")}}.append,
			func(b []byte) (any, error) { return parseRelay(b) },
			relayMsg{ID: 42, Relay: directory.Relay{Target: p.ID, Key: "k", Msg: []byte("onRelay")}}},
		{"relayReply", relayReply{ID: 42, Result: relayBehind}.append,
			func(b []byte) (any, error) { return parseRelayReply(b) }, relayReply{ID: 42, Result: relayBehind}},
	}
	for _, c := range bodies {
		h := header{Kind: kindDelta, Node: "node-1", Epoch: 77, Time: time.UnixMilli(1700000000999)}
		msg := seal(nil, codecKey, "stratus.test.dir", h, c.append)
		gotH, body, err := open(codecKey, "stratus.test.dir", msg)
		if err != nil || !reflect.DeepEqual(gotH, h) {
			t.Fatalf("%s: open = %+v, %v", c.name, gotH, err)
		}
		got, err := c.parse(body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
		// A flipped bit anywhere, another subject or another key: refused.
		for i := range msg {
			bad := bytes.Clone(msg)
			bad[i] ^= 0x10
			if _, _, err := open(codecKey, "stratus.test.dir", bad); !errors.Is(err, errMAC) {
				t.Fatalf("%s: bit flipped at %d: %v", c.name, i, err)
			}
		}
		if _, _, err := open(codecKey, "stratus.test.node.n2.in", msg); !errors.Is(err, errMAC) {
			t.Fatalf("%s: accepted on another subject", c.name)
		}
		if _, _, err := open([]byte("another key"), "stratus.test.dir", msg); !errors.Is(err, errMAC) {
			t.Fatalf("%s: accepted with another key", c.name)
		}
		// Truncated bodies are errors, never panics.
		for i := range body {
			if _, err := c.parse(body[:i]); err == nil {
				t.Fatalf("%s: %d of %d bytes parsed", c.name, i, len(body))
			}
		}
	}
}

// Bounds: oversized fields are refused before anything is allocated for
// them.
func TestCodecBounds(t *testing.T) {
	var id [32]byte
	big := relayMsg{ID: 1, Relay: directory.Relay{Target: id, Msg: make([]byte, maxRelayMsg+1)}}.append(nil)
	if _, err := parseRelay(big); !errors.Is(err, errTooLarge) {
		t.Fatalf("oversized relay: %v", err)
	}
	if _, err := parseDelta([]byte{1, 0xff, 0xff, 0x7f}); !errors.Is(err, errTooLarge) {
		t.Fatalf("a delta claiming millions of changes: %v", err)
	}
	if _, err := parseDelta([]byte{0, 1, opRemove}); err == nil {
		t.Fatal("a delta numbered from 0 accepted")
	}
}

// FuzzClusterMessage feeds arbitrary bytes to the envelope and every body
// parser: errors, never panics; what parses re-encodes to an equal value.
func FuzzClusterMessage(f *testing.F) {
	p := samplePeer()
	f.Add(byte(0), delta{First: 1, Ops: []op{{Put: true, Peer: p}}}.append(nil))
	f.Add(byte(0), delta{First: 1, Ops: []op{{Group: &groupOp{Join: true, Peer: p.ID}}, {Group: &groupOp{Peer: p.ID}}}}.append(nil))
	f.Add(byte(1), heartbeat{Seq: 1, Public: []netip.AddrPort{p.Observed}, Version: "x"}.append(nil))
	f.Add(byte(2), introMsg{Target: p.ID, EPD: []byte{1}, Tag: []byte{2}, Reply: []directory.Address{{AddrPort: p.Observed}}}.append(nil))
	f.Add(byte(3), relayMsg{ID: 1, Relay: directory.Relay{Msg: []byte("m")}}.append(nil))
	f.Add(byte(4), relayReply{ID: 1}.append(nil))
	f.Add(byte(5), snapPart{Nonce: 1, Seq: 1, Ops: []op{{Put: true, Peer: p}}}.append(nil))
	f.Add(byte(6), seal(nil, codecKey, "s", header{Kind: kindBye, Node: "n"}, nil))
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		switch which % 8 {
		case 0:
			if d, err := parseDelta(b); err == nil {
				again, err := parseDelta(d.append(nil))
				if err != nil || len(again.Ops) != len(d.Ops) || again.First != d.First {
					t.Fatalf("delta round trip: %v", err)
				}
			}
		case 1:
			if h, err := parseHeartbeat(b); err == nil {
				if _, err := parseHeartbeat(h.append(nil)); err != nil {
					t.Fatal(err)
				}
			}
		case 2:
			if in, err := parseIntro(b); err == nil {
				if _, err := parseIntro(introMsg(in).append(nil)); err != nil {
					t.Fatal(err)
				}
			}
		case 3:
			if r, err := parseRelay(b); err == nil {
				if _, err := parseRelay(r.append(nil)); err != nil {
					t.Fatal(err)
				}
			}
		case 4:
			_, _ = parseRelayReply(b)
		case 5:
			if s, err := parseSnapPart(b); err == nil {
				if _, err := parseSnapPart(s.append(nil)); err != nil {
					t.Fatal(err)
				}
			}
		case 6:
			_, _, _ = open(codecKey, "s", b)
		case 7:
			_, _ = parseSnapReq(b)
		}
	})
}
