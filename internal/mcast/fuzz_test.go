package mcast

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
)

type nullSink struct{ n int }

func (s *nullSink) SendFragment(PeerID, *groupmedia.Fragment, bool) { s.n++ }
func (s *nullSink) SendMap(PeerID, []byte)                          { s.n++ }
func (s *nullSink) SendPush(PeerID, byte)                           { s.n++ }
func (s *nullSink) SendPull(PeerID, uint64)                         { s.n++ }
func (s *nullSink) Deliver(Message)                                 { s.n++ }

// FuzzStreamInput drives a player with whatever three neighbours send
// (each input byte string is read as a sequence of GR 11/12 messages):
// nothing panics and the bounds hold.
func FuzzStreamInput(f *testing.F) {
	f.Add([]byte{0x22, 0x14, 0xff, 0xff, 0x07, 0x20, 0x01, 0x09, 0, 0, 0, 0, 0x17, 0x23, 0xff, 0x2b, 0x01})
	f.Add([]byte{0x30, 0x05, 0x02, 0x09, 0, 0, 0, 1, 1, 0x10, 0x06, 0x01, 2, 0x00, 0x07, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if err := streamInputBody(in); err != "" {
			t.Fatal(err)
		}
	})
}

// streamInputBody runs one input; it returns what went wrong.
func streamInputBody(in []byte) string {
	{
		s := New(Config{MaxFragments: 64, MaxBytes: 4096, MaxPending: 16, MaxMapBytes: 16, Rand: rand.New(rand.NewPCG(1, 1))})
		sink := &nullSink{}
		peers := []PeerID{{1}, {2}, {3}}
		for _, p := range peers {
			s.AddPeer(p, false)
			s.OnPush(p, 0xff)
		}
		now := time.Unix(0, 0)
		for i := 0; len(in) > 1; i++ {
			from := peers[int(in[0])%3]
			n := min(int(in[1])%24+1, len(in)-2)
			m := in[2 : 2+n]
			in = in[2+n:]
			if len(m) == 0 {
				continue
			}
			switch m[0] {
			case groupmedia.TypeMap:
				if mp, err := groupmedia.ParseMap(m); err == nil {
					s.OnMap(now, from, mp)
				}
			case groupmedia.TypePush:
				if mask, err := groupmedia.ParsePush(m); err == nil {
					s.OnPush(from, mask)
				}
			case groupmedia.TypePull:
				if id, err := groupmedia.ParsePull(m); err == nil {
					s.OnPull(now, from, id, sink)
				}
			default:
				if fr, err := groupmedia.ParseFragment(m); err == nil {
					s.OnFragment(now, from, fr, sink)
				}
			}
			now = now.Add(30 * time.Millisecond)
			s.Tick(now, sink)
			if st := s.Stats(); st.Held > 64 || st.HeldBytes > 4096 || len(s.pulls) > 16 {
				return fmt.Sprintf("bounds: %+v, %d pulls", st, len(s.pulls))
			}
		}
	}
	return ""
}
