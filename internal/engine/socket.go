package engine

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// batchSize is how many datagrams a shard reads at once (one recvmmsg on
// Linux) and the most it hands to one sendmmsg.
const batchSize = 32

// inBatch holds datagrams read at once. The buffers stay valid until the
// next read: everything the shard does with a batch (including the
// Diffie-Hellman work and the application's introduction hook) is done by
// then, so nothing is copied.
type inBatch struct {
	buf [][]byte
	n   []int
	src []netip.AddrPort
}

func newInBatch() *inBatch {
	b := &inBatch{buf: make([][]byte, batchSize), n: make([]int, batchSize), src: make([]netip.AddrPort, batchSize)}
	for i := range b.buf {
		b.buf[i] = make([]byte, wire.MaxRecvSize+1) // one more: oversize datagrams are seen as such
	}
	return b
}

// outBatch queues datagrams for one write (one sendmmsg on Linux).
type outBatch struct {
	data []byte
	ends []int
	dst  []netip.AddrPort
}

func (o *outBatch) add(b []byte, to netip.AddrPort) {
	o.data = append(o.data, b...)
	o.ends = append(o.ends, len(o.data))
	o.dst = append(o.dst, to)
}

func (o *outBatch) len() int { return len(o.ends) }

// datagram returns the i-th queued datagram.
func (o *outBatch) datagram(i int) []byte {
	start := 0
	if i > 0 {
		start = o.ends[i-1]
	}
	return o.data[start:o.ends[i]]
}

func (o *outBatch) reset() {
	o.data, o.ends, o.dst = o.data[:0], o.ends[:0], o.dst[:0]
}

// pollNow is a read deadline already passed: the read takes what has
// arrived without waiting.
var pollNow = time.Unix(1, 0)

// socket is one shard's UDP socket.
type socket interface {
	// read waits until datagrams arrive, the deadline passes (zero: no
	// deadline) or wake is called, and reads up to batchSize of them. It
	// returns 0 and no error on a deadline or a wake, net.ErrClosed once
	// the socket is closed.
	read(in *inBatch, deadline time.Time) (int, error)
	// wake makes a read in progress, or the next one, return at once. Any
	// goroutine may call it.
	wake()
	// write sends the queued datagrams and returns how many went out. It
	// never blocks on a full socket buffer: what does not fit is dropped
	// (RTMFP retransmits), so that one slow write cannot stall a shard.
	write(out *outBatch) int
	close() error
	localAddr() net.Addr
}

// connSocket serves any net.PacketConn (in-memory test networks, and UDP
// where the Linux fast path is not available): a goroutine of its own
// reads datagrams and hands them over.
type connSocket struct {
	conn   net.PacketConn
	udp    *net.UDPConn
	in     chan received
	free   chan []byte
	wakeCh chan struct{}
	timer  *time.Timer
	done   chan struct{}
}

type received struct {
	b   []byte
	n   int
	src netip.AddrPort
	err error
}

func newConnSocket(conn net.PacketConn, warn func(error, int)) *connSocket {
	s := &connSocket{conn: conn, in: make(chan received, batchSize), free: make(chan []byte, batchSize),
		wakeCh: make(chan struct{}, 1), timer: time.NewTimer(time.Hour), done: make(chan struct{})}
	s.timer.Stop()
	s.udp, _ = conn.(*net.UDPConn)
	for range batchSize {
		s.free <- make([]byte, wire.MaxRecvSize+1)
	}
	go s.reader(warn)
	return s
}

func (s *connSocket) reader(warn func(error, int)) {
	backoff := readBackoff{warn: warn}
	for {
		var b []byte
		select {
		case b = <-s.free:
		case <-s.done:
			return
		}
		var n int
		var src netip.AddrPort
		var err error
		if s.udp != nil {
			n, src, err = s.udp.ReadFromUDPAddrPort(b)
		} else {
			var a net.Addr
			n, a, err = s.conn.ReadFrom(b)
			if ua, ok := a.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			s.free <- b
			if errors.Is(err, net.ErrClosed) {
				select {
				case s.in <- received{err: net.ErrClosed}:
				case <-s.done:
				}
				return
			}
			if !backoff.failed(err, s.done) {
				return
			}
			continue
		}
		backoff.ok()
		select {
		case s.in <- received{b: b, n: n, src: src}:
		case <-s.done:
			return
		}
	}
}

func (s *connSocket) read(in *inBatch, deadline time.Time) (int, error) {
	var tc <-chan time.Time
	if !deadline.IsZero() {
		s.timer.Reset(time.Until(deadline))
		tc = s.timer.C
		defer s.timer.Stop()
	}
	n := 0
	take := func(r received) error {
		if r.err != nil {
			return r.err
		}
		in.n[n], in.src[n] = copy(in.buf[n], r.b[:r.n]), r.src
		n++
		s.free <- r.b
		return nil
	}
	select {
	case r := <-s.in:
		if err := take(r); err != nil {
			return 0, err
		}
	case <-tc:
		return 0, nil
	case <-s.wakeCh:
		return 0, nil
	case <-s.done:
		return 0, net.ErrClosed
	}
	for n < batchSize {
		select {
		case r := <-s.in:
			if err := take(r); err != nil {
				return n, nil // the error comes again with the next read
			}
		default:
			return n, nil
		}
	}
	return n, nil
}

func (s *connSocket) wake() {
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

func (s *connSocket) write(out *outBatch) int {
	sent := 0
	for i := range out.len() {
		var err error
		if s.udp != nil {
			_, err = s.udp.WriteToUDPAddrPort(out.datagram(i), out.dst[i])
		} else {
			_, err = s.conn.WriteTo(out.datagram(i), net.UDPAddrFromAddrPort(out.dst[i]))
		}
		if err == nil {
			sent++
		}
	}
	return sent
}

func (s *connSocket) close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	return s.conn.Close()
}

func (s *connSocket) localAddr() net.Addr { return s.conn.LocalAddr() }

// readBackoff keeps a socket whose reads keep failing from spinning a
// core. Some errors are one datagram's (an ICMP error reported on a later
// read, a truncated datagram) and are retried at once; after a few in a
// row it waits, doubling up to a second.
type readBackoff struct {
	failures int
	warn     func(err error, inARow int) // logs the first failure and every 100th
}

func (b *readBackoff) ok() { b.failures = 0 }

// failed records a read error and waits if needed; it reports false if
// done closed meanwhile.
func (b *readBackoff) failed(err error, done <-chan struct{}) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	b.failures++
	if b.warn != nil && (b.failures == 1 || b.failures%100 == 0) {
		b.warn(err, b.failures)
	}
	if b.failures > 3 {
		t := time.NewTimer(min(time.Duration(1<<min(b.failures-3, 10))*time.Millisecond, time.Second))
		defer t.Stop()
		select {
		case <-t.C:
		case <-done:
			return false
		}
	}
	return true
}
