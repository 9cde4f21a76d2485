package session

import (
	"net/netip"
	"testing"
	"time"
)

// The per-packet paths of an open session in steady state, for
// allocations (go test -bench . -benchmem): a data packet received and
// its message read, an acknowledgement received, a keepalive ping
// answered. Each operation is one packet into the session; what makes the
// packet (the far end's work) runs with the timer stopped.

// benchPair is two sessions wired back to back on a fake clock, with the
// datagram each one sent last.
type benchPair struct {
	now  time.Time
	s    [2]*Session
	last [2][]byte
	out  [2]func([]byte, netip.AddrPort)
	addr [2]netip.AddrPort
	sf   *SendFlow // a's flow to b
	rf   *RecvFlow // b's end of it
	msg  []byte
}

func newBenchPair(b *testing.B) *benchPair {
	p := &benchPair{now: time.Unix(1_800_000_000, 0), msg: make([]byte, 100),
		addr: [2]netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:2000")}}
	sa, oa, sb, ob := pairCiphers()
	h := &recorder{}
	p.s[0] = New(Config{Initiator: true, NearSID: 11, FarSID: 22, Dest: p.addr[1], Sealer: sa, Opener: oa, Handler: &recorder{}, Keepalive: 10 * time.Second}, p.now)
	p.s[1] = New(Config{Initiator: false, NearSID: 22, FarSID: 11, Dest: p.addr[0], Sealer: sb, Opener: ob, Handler: h, Keepalive: 10 * time.Second}, p.now)
	for i := range 2 {
		p.out[i] = func(d []byte, _ netip.AddrPort) { p.last[i] = append(p.last[i][:0], d...) }
	}
	f, err := p.s[0].OpenFlow([]byte("TC"), nil)
	if err != nil {
		b.Fatal(err)
	}
	p.sf = f
	// The flow's first message opens it at b; a few more round trips
	// settle the congestion window and the buffers.
	for range 64 {
		p.roundTrip(b)
	}
	if len(h.recvFlows) != 1 {
		b.Fatalf("%d flows at b", len(h.recvFlows))
	}
	p.rf = h.recvFlows[0]
	return p
}

// send has a write one message and returns the packet it sent.
func (p *benchPair) send(b *testing.B) []byte {
	p.now = p.now.Add(time.Millisecond)
	if err := p.sf.Write(p.msg, time.Time{}, nil); err != nil {
		b.Fatal(err)
	}
	p.last[0] = p.last[0][:0]
	p.s[0].Flush(p.now, p.out[0])
	if len(p.last[0]) == 0 {
		b.Fatal("a sent nothing")
	}
	return p.last[0]
}

// ackFrom has b send what it owes (its acknowledgement, once the delayed
// acknowledgement is due) and returns it.
func (p *benchPair) ackFrom(b *testing.B) []byte {
	p.now = p.now.Add(time.Second)
	p.s[1].Timer(p.now)
	p.last[1] = p.last[1][:0]
	p.s[1].Flush(p.now, p.out[1])
	if len(p.last[1]) == 0 {
		b.Fatal("b sent nothing")
	}
	return p.last[1]
}

func (p *benchPair) roundTrip(b *testing.B) {
	d := p.send(b)
	if err := p.s[1].Receive(p.now, p.addr[0], d); err != nil {
		b.Fatal(err)
	}
	if p.rf != nil {
		p.rf.Read()
	}
	for _, f := range p.s[1].recvFlows {
		for {
			if _, ok, _ := f.Read(); !ok {
				break
			}
		}
	}
	a := p.ackFrom(b)
	if err := p.s[0].Receive(p.now, p.addr[1], a); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReceiveData: b receives a packet with one 100-byte message and
// reads it.
func BenchmarkReceiveData(b *testing.B) {
	p := newBenchPair(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		d := p.send(b)
		b.StartTimer()
		if err := p.s[1].Receive(p.now, p.addr[0], d); err != nil {
			b.Fatal(err)
		}
		if _, ok, _ := p.rf.Read(); !ok {
			b.Fatal("no message")
		}
		b.StopTimer()
		a := p.ackFrom(b)
		if err := p.s[0].Receive(p.now, p.addr[1], a); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkReceiveAck: a receives the acknowledgement of its message (the
// message is freed, the window and the timers move).
func BenchmarkReceiveAck(b *testing.B) {
	p := newBenchPair(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		d := p.send(b)
		if err := p.s[1].Receive(p.now, p.addr[0], d); err != nil {
			b.Fatal(err)
		}
		p.rf.Read()
		a := p.ackFrom(b)
		b.StartTimer()
		if err := p.s[0].Receive(p.now, p.addr[1], a); err != nil {
			b.Fatal(err)
		}
	}
	if p.sf.Buffered() != 0 {
		b.Fatalf("%d bytes unacknowledged", p.sf.Buffered())
	}
}

// BenchmarkKeepalive: b receives a's keepalive ping and answers it.
func BenchmarkKeepalive(b *testing.B) {
	p := newBenchPair(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		// Quiet for the keepalive interval: a pings.
		p.now = p.now.Add(11 * time.Second)
		p.s[1].Timer(p.now) // b has been idle too: it let go of its cipher state
		p.s[0].Timer(p.now)
		p.last[0] = p.last[0][:0]
		p.s[0].Flush(p.now, p.out[0])
		if len(p.last[0]) == 0 {
			b.Fatal("no ping")
		}
		ping := p.last[0]
		p.last[1] = p.last[1][:0]
		b.StartTimer()
		if err := p.s[1].Receive(p.now, p.addr[0], ping); err != nil {
			b.Fatal(err)
		}
		p.s[1].Flush(p.now, p.out[1])
		b.StopTimer()
		if len(p.last[1]) == 0 {
			b.Fatal("no ping reply")
		}
		if err := p.s[0].Receive(p.now, p.addr[1], p.last[1]); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
