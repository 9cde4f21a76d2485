package session

// Regression tests from a review of the session layer: each failed before
// its fix (a hang on sequence number 2^64-1, flight leaked by abandoned
// fragments, a flush loop when the window admitted less than a fragment, a
// timer busy loop on a finished flow with unread messages, an oversized
// raw chunk stuck in the queue).

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func (l *link) craft(chunks []byte) []byte {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: ticks(l.now)})
	pkt = append(pkt, chunks...)
	sl, _ := wire.NewSealer(keysFor("a->b"), wire.Features{}, nil)
	return sl.Seal(nil, 22, pkt)
}

func TestRegressFSNMaxHang(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 1)
	opts := append(wire.AppendOption(nil, wire.OptMetadata, []byte("TC")), 0)
	ud := wire.UserData{FlowID: 5, Seq: ^uint64(0), FSNOffset: 0, Options: opts, Data: []byte("x")}
	d := l.craft(ud.Append(nil))
	done := make(chan error, 1)
	go func() { done <- l.s[1].Receive(l.now, l.addr[0], d) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Receive did not return: infinite loop in reassemble")
	}
}

func TestRegressAbandonLeak(t *testing.T) {
	l := newLink(t, 0, 0, 20*time.Millisecond, 0, 1)
	f, _ := l.s[0].OpenFlow([]byte("TEST"), nil)
	f.Write([]byte("hello"), time.Time{}, nil)
	l.run(time.Second, func() bool { return len(l.h[1].recvFlows) == 1 && f.gotAck })
	f.Write(bytes.Repeat([]byte("x"), 1000), l.now.Add(5*time.Millisecond), nil)
	l.s[0].Flush(l.now, l.out(0))
	l.now = l.now.Add(10 * time.Millisecond)
	l.s[0].Timer(l.now)
	l.run(3*time.Second, func() bool { return len(f.sent) == 0 && len(l.q) == 0 })
	if l.s[0].outstanding != 0 || f.flight != 0 {
		t.Errorf("leaked outstanding=%d flight=%d", l.s[0].outstanding, f.flight)
	}
}

func TestRegressWindowGapSpin(t *testing.T) {
	l := newLink(t, 0, 0, 1*time.Millisecond, 0, 1)
	f, _ := l.s[0].OpenFlow([]byte("TEST"), nil)
	f.Write([]byte("hello"), time.Time{}, nil)
	l.run(time.Second, func() bool { return f.gotAck && len(f.sent) == 0 })
	s := l.s[0]
	f.flight, f.farWindow = 60000, 61160
	s.paceAt = l.now.Add(-time.Second) // any earlier burst-limited Flush leaves this
	f.Write(bytes.Repeat([]byte("v"), 5000), time.Time{}, nil)
	n := 0
	s.Flush(l.now, func([]byte, netip.AddrPort) { n++ })
	if s.WantsFlush(l.now) && n == 0 {
		t.Error("WantsFlush true after a Flush that sent nothing: engine.flushDirty loops forever")
	}
}

func TestRegressFinishedUnreadSpin(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 1)
	f, _ := l.s[0].OpenFlow([]byte("TEST"), nil)
	f.Write([]byte("hello"), time.Time{}, nil)
	f.Close()
	l.run(2*time.Second, func() bool { return f.Complete() })
	// No keepalive: after 130 s of silence a ping and the dead-peer check
	// would rightly be due; this is about the finished flow's linger.
	l.s[1].cfg.Keepalive = 0
	l.now = l.now.Add(130 * time.Second)
	// As the engine does: timers, then whatever they made due.
	l.s[1].Timer(l.now)
	l.s[1].Flush(l.now, func([]byte, netip.AddrPort) {})
	if d := l.s[1].Deadline(l.now); !d.IsZero() && !d.After(l.now) {
		t.Errorf("deadline %v in the past: timer busy loop", d.Sub(l.now))
	}
}

func TestRegressOversizeRawChunkNoTSE(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 1)
	s := l.s[1]
	big := wire.FIHello{EPD: make([]byte, 1500), Reply: wire.Address{AddrPort: netip.MustParseAddrPort("1.2.3.4:5")}, Tag: make([]byte, 16)}.Append(nil)
	s.QueueChunk(big)
	for i := 0; i < 3; i++ {
		s.Timer(l.now)
		s.Flush(l.now, func([]byte, netip.AddrPort) {})
	}
	if len(s.rawChunks) > 0 {
		t.Errorf("oversized raw chunk never dropped; Deadline-now=%v", s.Deadline(l.now).Sub(l.now))
	}
}
