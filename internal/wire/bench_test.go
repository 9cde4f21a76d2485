package wire

import "testing"

func benchPacket() []byte {
	pkt := AppendHeader(nil, Header{Flags: FlagTimestamp | FlagTimestampEcho | ModeInitiator, Timestamp: 1, TimestampEcho: 2})
	return AppendChunk(pkt, ChunkUserData, make([]byte, 1200-len(pkt)-3))
}

func BenchmarkSeal1200(b *testing.B) {
	s, _ := NewSealer([]byte("0123456789abcdef"), Features{}, nil)
	pkt := benchPacket()
	buf := make([]byte, 0, 1300)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		buf = s.Seal(buf[:0], 42, pkt)
	}
}

func BenchmarkOpen1200(b *testing.B) {
	key := []byte("0123456789abcdef")
	s, _ := NewSealer(key, Features{}, nil)
	o, _ := NewOpener(key, Features{}, nil)
	d := s.Seal(nil, 42, benchPacket())
	work := make([]byte, len(d))
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		copy(work, d)
		if _, err := o.Open(work); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealHMACSeq1200(b *testing.B) {
	s, _ := NewSealer([]byte("0123456789abcdef"), Features{HMACLen: 16, Seq: true}, []byte("k"))
	pkt := benchPacket()
	buf := make([]byte, 0, 1300)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		buf = s.Seal(buf[:0], 42, pkt)
	}
}
