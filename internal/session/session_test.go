package session

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// recorder is a Handler that remembers events.
type recorder struct {
	recvFlows []*RecvFlow
	closed    error
	isClosed  bool
	fihellos  []wire.FIHello
	moved     []netip.AddrPort
	changed   []*SendFlow
}

func (r *recorder) RecvFlow(f *RecvFlow)                        { r.recvFlows = append(r.recvFlows, f) }
func (r *recorder) Readable(*RecvFlow)                          {}
func (r *recorder) SendFlowChanged(f *SendFlow)                 { r.changed = append(r.changed, f) }
func (r *recorder) FIHello(_ *Session, c wire.FIHello)          { r.fihellos = append(r.fihellos, c) }
func (r *recorder) AddressChanged(_ *Session, a netip.AddrPort) { r.moved = append(r.moved, a) }
func (r *recorder) Closed(_ *Session, err error)                { r.closed, r.isClosed = err, true }
func (r *recorder) Wake(*Session)                               {}

type inFlight struct {
	at   time.Time
	to   int // 0 = a, 1 = b
	src  netip.AddrPort
	data []byte
	n    int
}

// link simulates a network between two sessions on a fake clock.
type link struct {
	t         *testing.T
	now       time.Time
	rnd       *rand.Rand
	loss, dup float64
	delay     time.Duration
	jitter    time.Duration
	q         []inFlight
	s         [2]*Session
	h         [2]*recorder
	addr      [2]netip.AddrPort
	seq       int
	delivered int
	dropped   int
	dropNext  [2]int // drop this many upcoming datagrams from side i
}

func keysFor(seed string) []byte {
	h := sha256.Sum256([]byte(seed))
	return h[:16]
}

// pairCiphers is the two ends' ciphers: a's sealer and opener, b's.
func pairCiphers() (sa *wire.Sealer, oa *wire.Opener, sb *wire.Sealer, ob *wire.Opener) {
	kAB, kBA := keysFor("a->b"), keysFor("b->a")
	sa, _ = wire.NewSealer(kAB, wire.Features{}, nil)
	oa, _ = wire.NewOpener(kBA, wire.Features{}, nil)
	sb, _ = wire.NewSealer(kBA, wire.Features{}, nil)
	ob, _ = wire.NewOpener(kAB, wire.Features{}, nil)
	return
}

func newLink(t *testing.T, loss, dup float64, delay, jitter time.Duration, seed uint64) *link {
	l := &link{t: t, now: time.Unix(1_800_000_000, 0), rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b9)),
		loss: loss, dup: dup, delay: delay, jitter: jitter,
		addr: [2]netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:2000")}}
	sa, oa, sb, ob := pairCiphers()
	l.h[0], l.h[1] = &recorder{}, &recorder{}
	l.s[0] = New(Config{Initiator: true, NearSID: 11, FarSID: 22, Dest: l.addr[1], Sealer: sa, Opener: oa, Handler: l.h[0], Keepalive: 10 * time.Second}, l.now)
	l.s[1] = New(Config{Initiator: false, NearSID: 22, FarSID: 11, Dest: l.addr[0], Sealer: sb, Opener: ob, Handler: l.h[1], Keepalive: 10 * time.Second}, l.now)
	return l
}

func (l *link) out(from int) func([]byte, netip.AddrPort) {
	return func(d []byte, dst netip.AddrPort) {
		if len(d) > wire.MaxSendSize {
			l.t.Fatalf("datagram of %d bytes", len(d))
		}
		copies := 1
		if l.dropNext[from] > 0 {
			l.dropNext[from]--
			l.dropped++
			return
		}
		if l.rnd.Float64() < l.loss {
			copies = 0
			l.dropped++
		} else if l.rnd.Float64() < l.dup {
			copies = 2
		}
		to := 1 - from
		src := l.addr[from]
		if dst != l.addr[to] {
			return // nobody there
		}
		for range copies {
			delay := l.delay
			if l.jitter > 0 {
				delay += time.Duration(l.rnd.Int64N(int64(l.jitter)))
			}
			l.seq++
			l.q = append(l.q, inFlight{at: l.now.Add(delay), to: to, src: src, data: append([]byte(nil), d...), n: l.seq})
		}
	}
}

// step advances the clock to the next event and processes it.
func (l *link) step() bool {
	for i := range 2 {
		l.s[i].Timer(l.now)
		l.s[i].Flush(l.now, l.out(i))
	}
	next := time.Time{}
	for i := range 2 {
		if d := l.s[i].Deadline(l.now); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	sort.SliceStable(l.q, func(i, j int) bool {
		return l.q[i].at.Before(l.q[j].at) || l.q[i].at.Equal(l.q[j].at) && l.q[i].n < l.q[j].n
	})
	if len(l.q) > 0 && (next.IsZero() || !l.q[0].at.After(next)) {
		p := l.q[0]
		l.q = l.q[1:]
		if p.at.After(l.now) {
			l.now = p.at
		}
		if !l.s[p.to].IsClosed() {
			_ = l.s[p.to].Receive(l.now, p.src, p.data)
			l.delivered++
		}
		return true
	}
	if next.IsZero() {
		return false
	}
	if next.After(l.now) {
		l.now = next
	} else {
		l.now = l.now.Add(time.Millisecond)
	}
	return true
}

// transfer sends total bytes of messages (sizes varying from 0 to 5000
// bytes, each tagged with its index) from a to b and checks they arrive
// byte-exact and in order. It returns the simulated time taken.
func (l *link) transfer(total int) time.Duration {
	start := l.now
	f, err := l.s[0].OpenFlow([]byte("TEST"), nil)
	if err != nil {
		l.t.Fatal(err)
	}
	var sent [][]byte
	for n, i := 0, 0; n < total; i++ {
		size := l.rnd.IntN(5000)
		if i%50 == 0 {
			size = 0
		}
		m := make([]byte, size+4)
		binary.BigEndian.PutUint32(m, uint32(i))
		for j := 4; j < len(m); j++ {
			m[j] = byte(i + j)
		}
		sent = append(sent, m)
		n += len(m)
	}
	next, delivered := 0, 0
	var got [][]byte
	settled := 0
	for l.now.Sub(start) < 30*time.Minute {
		// Keep the writer ahead of the window but bounded, like an app.
		for next < len(sent) && f.Buffered() < 256<<10 {
			if err := f.Write(sent[next], time.Time{}, func(ok bool) {
				if !ok {
					l.t.Errorf("message not delivered")
				}
				settled++
			}); err != nil {
				l.t.Fatal(err)
			}
			next++
			if next == len(sent) {
				f.Close()
			}
		}
		if !l.step() {
			break
		}
		for _, rf := range l.h[1].recvFlows {
			for {
				m, ok, _ := rf.Read()
				if !ok {
					break
				}
				got = append(got, m)
				delivered++
			}
		}
		if delivered == len(sent) && f.Complete() {
			break
		}
	}
	if len(got) != len(sent) {
		l.t.Fatalf("delivered %d of %d messages in %v (dropped %d packets)", len(got), len(sent), l.now.Sub(start), l.dropped)
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			l.t.Fatalf("message %d differs (len %d vs %d)", i, len(got[i]), len(sent[i]))
		}
	}
	if settled != len(sent) {
		l.t.Fatalf("%d of %d receipts", settled, len(sent))
	}
	if !f.Complete() || !l.h[1].recvFlows[0].Finished() {
		l.t.Fatalf("flow not complete at both ends")
	}
	return l.now.Sub(start)
}

func TestTransferLossless(t *testing.T) {
	l := newLink(t, 0, 0, 5*time.Millisecond, 0, 1)
	d := l.transfer(2 << 20)
	t.Logf("2 MiB in %v simulated, cwnd %d, srtt %v", d, l.s[0].CWND(), l.s[0].SRTT())
}

func TestTransferLossyReorderedDuplicated(t *testing.T) {
	for _, loss := range []float64{0.1, 0.3} {
		t.Run(fmt.Sprintf("loss%.0f", loss*100), func(t *testing.T) {
			l := newLink(t, loss, 0.05, 10*time.Millisecond, 20*time.Millisecond, uint64(loss*1000))
			d := l.transfer(1 << 20)
			t.Logf("1 MiB in %v simulated; %d packets dropped; rtx %d timeouts %d", d, l.dropped, l.s[0].Stats.Retransmissions, l.s[0].Stats.Timeouts)
		})
	}
}
