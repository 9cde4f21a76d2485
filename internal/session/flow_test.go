package session

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// run steps the link until cond holds or the simulated time budget ends.
func (l *link) run(budget time.Duration, cond func() bool) bool {
	end := l.now.Add(budget)
	for l.now.Before(end) {
		if cond() {
			return true
		}
		if !l.step() {
			l.now = l.now.Add(10 * time.Millisecond)
		}
	}
	return cond()
}

func (l *link) readAll(f *RecvFlow, got *[][]byte) {
	for {
		m, ok, _ := f.Read()
		if !ok {
			return
		}
		*got = append(*got, m)
	}
}

func TestArrivalOrderDelivery(t *testing.T) {
	l := newLink(t, 0, 0, 10*time.Millisecond, 0, 21)
	f, _ := l.s[0].OpenFlow([]byte("RXI"), nil)
	f.Write([]byte("zero"), time.Time{}, nil)
	if !l.run(time.Second, func() bool { return len(l.h[1].recvFlows) == 1 && l.h[1].recvFlows[0].Pending() == 1 }) {
		t.Fatal("no flow")
	}
	rf := l.h[1].recvFlows[0]
	rf.ArrivalOrder = true
	rf.Read()
	// The packet carrying "one" is lost; "two" and the three-fragment big
	// message must be delivered as soon as they are complete.
	f.Write([]byte("one"), time.Time{}, nil)
	l.dropNext[0] = 1
	l.s[0].Flush(l.now, l.out(0))
	big := bytes.Repeat([]byte("3"), 3000)
	f.Write([]byte("two"), time.Time{}, nil)
	f.Write(big, time.Time{}, nil)
	var got [][]byte
	l.run(100*time.Millisecond, func() bool { l.readAll(rf, &got); return len(got) >= 2 })
	if len(got) < 2 || string(got[0]) != "two" || !bytes.Equal(got[1], big) {
		t.Fatalf("before the retransmission got %d messages", len(got))
	}
	l.run(10*time.Second, func() bool { l.readAll(rf, &got); return len(got) == 3 })
	if len(got) != 3 || string(got[2]) != "one" {
		t.Fatalf("got %d messages", len(got))
	}
}

func TestInOrderDeliveryWaitsForGap(t *testing.T) {
	l := newLink(t, 0, 0, 10*time.Millisecond, 0, 22)
	f, _ := l.s[0].OpenFlow([]byte("RXI0"), nil)
	f.Write([]byte("zero"), time.Time{}, nil)
	l.run(time.Second, func() bool { return len(l.h[1].recvFlows) == 1 })
	rf := l.h[1].recvFlows[0]
	f.Write([]byte("one"), time.Time{}, nil)
	l.dropNext[0] = 1
	l.s[0].Flush(l.now, l.out(0))
	f.Write([]byte("two"), time.Time{}, nil)
	var got [][]byte
	l.run(100*time.Millisecond, func() bool { l.readAll(rf, &got); return false })
	if len(got) != 1 {
		t.Fatalf("delivered %d messages across a gap", len(got))
	}
	l.run(10*time.Second, func() bool { l.readAll(rf, &got); return len(got) == 3 })
	if len(got) != 3 || string(got[1]) != "one" || string(got[2]) != "two" {
		t.Fatalf("got %q", got)
	}
}

// A receiver that stops reading holds the sender to its (small) window,
// never advertising zero, and the transfer completes once it reads.
func TestSmallWindowThrottlesSender(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 23)
	l.s[1].cfg.RecvBuffer = 32 << 10
	f, _ := l.s[0].OpenFlow([]byte("W"), nil)
	const n = 200
	for i := range n {
		f.Write(bytes.Repeat([]byte{byte(i)}, 1000), time.Time{}, nil)
	}
	l.run(10*time.Second, func() bool { return false })
	rf := l.h[1].recvFlows[0]
	if rf.window() != 1 || rf.buffered > l.s[1].cfg.RecvBuffer || f.farWindow != 1024 {
		t.Fatalf("window %d, buffered %d, sender sees %d", rf.window(), rf.buffered, f.farWindow)
	}
	var got [][]byte
	l.run(5*time.Minute, func() bool { l.readAll(rf, &got); return len(got) == n })
	if len(got) != n {
		t.Fatalf("%d of %d messages after the reader drained", len(got), n)
	}
	for i, m := range got {
		if len(m) != 1000 || m[0] != byte(i) {
			t.Fatalf("message %d wrong", i)
		}
	}
}

// A far end that advertises a zero window gets buffer probes (0x18), and
// the flow resumes when an ack reopens the window.
func TestZeroWindowBufferProbe(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 26)
	f, _ := l.s[0].OpenFlow([]byte("Z"), nil)
	f.Write([]byte("first"), time.Time{}, nil)
	l.run(time.Second, func() bool { return len(l.h[1].recvFlows) == 1 && f.gotAck })
	f.onAck(wire.Ack{FlowID: f.ID, Window: 0, Cum: 1}) // as Cumulus-free peers may
	f.Write([]byte("second"), time.Time{}, nil)
	var probes int
	rx := l.s[1]
	out := func(d []byte, _ netip.AddrPort) {
		pt, err := rx.cfg.Opener.Open(append([]byte(nil), d...))
		if err != nil {
			return
		}
		_, hl, _ := wire.ParseHeader(pt)
		for b := pt[hl:]; ; {
			c, rest, ok := wire.NextChunk(b)
			if !ok {
				break
			}
			if c.Type == wire.ChunkBufferProbe {
				probes++
			}
			b = rest
		}
	}
	for range 20 {
		l.now = l.now.Add(500 * time.Millisecond)
		l.s[0].Timer(l.now)
		l.s[0].Flush(l.now, out)
	}
	if probes == 0 || len(f.sent) > 0 && f.sent[len(f.sent)-1].seq > 1 {
		t.Fatalf("%d probes; data sent into a zero window", probes)
	}
	f.onAck(wire.Ack{FlowID: f.ID, Window: 64, Cum: 1})
	var got [][]byte
	rf := l.h[1].recvFlows[0]
	l.run(5*time.Second, func() bool { l.readAll(rf, &got); return len(got) == 2 })
	if len(got) != 2 || string(got[1]) != "second" {
		t.Fatalf("after the window reopened: %q", got)
	}
}

func TestIdleTimeoutClosesOrderly(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 24)
	l.s[0].cfg.IdleTimeout = 30 * time.Second
	l.s[0].cfg.Keepalive, l.s[1].cfg.Keepalive = 0, 0
	l.run(2*time.Minute, func() bool { return l.s[0].IsClosed() && l.s[1].IsClosed() })
	if !l.s[0].IsClosed() || l.s[0].Err() != ErrIdle || !l.s[1].IsClosed() || l.s[1].Err() != ErrClosedByPeer {
		t.Fatalf("closed %v/%v errs %v/%v", l.s[0].IsClosed(), l.s[1].IsClosed(), l.s[0].Err(), l.s[1].Err())
	}
}

func TestKeepaliveKeepsQuietSessionAlive(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 25)
	l.s[0].cfg.DeadAfter, l.s[1].cfg.DeadAfter = 25*time.Second, 25*time.Second
	l.run(5*time.Minute, func() bool { return l.s[0].IsClosed() || l.s[1].IsClosed() })
	if l.s[0].IsClosed() || l.s[1].IsClosed() {
		t.Fatal("a quiet session with keepalives died")
	}
	if l.delivered < 20 {
		t.Fatalf("only %d pings and replies in 5 minutes", l.delivered)
	}
}

// Optional flow options (types from 0x2000) travel with the metadata and
// the return association and reach the receiver's flow; the flow is
// accepted. Mandatory types cannot be sent as optional ones.
func TestOptionalFlowOptions(t *testing.T) {
	l := newLink(t, 0, 0, 10*time.Millisecond, 0, 23)
	back, _ := l.s[0].OpenFlow([]byte("B"), nil)
	back.Write([]byte("x"), time.Time{}, nil)
	if !l.run(time.Second, func() bool { return len(l.h[1].recvFlows) == 1 }) {
		t.Fatal("no flow")
	}
	opt := wire.Option{Type: 0x2001, Value: []byte{0x01}}
	f, err := l.s[1].OpenFlow([]byte("O"), l.h[1].recvFlows[0], opt)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("y"), time.Time{}, nil)
	if !l.run(time.Second, func() bool { return len(l.h[0].recvFlows) == 1 && l.h[0].recvFlows[0].Pending() == 1 }) {
		t.Fatal("no flow back")
	}
	rf := l.h[0].recvFlows[0]
	if rf.Rejected() || !rf.HasAssoc || len(rf.Optional) != 1 || rf.Optional[0].Type != 0x2001 || !bytes.Equal(rf.Optional[0].Value, opt.Value) {
		t.Fatalf("%+v", rf)
	}
	if _, err := l.s[1].OpenFlow([]byte("O"), nil, wire.Option{Type: 0x1fff}); err == nil {
		t.Fatal("a mandatory option type opened as optional")
	}
}
