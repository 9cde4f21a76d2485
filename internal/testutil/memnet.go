// Package testutil holds test helpers: an in-memory UDP-like network with
// loss, duplication, delay and reordering whose connections are plain
// net.PacketConns. It uses only channels and timers, so it runs inside
// testing/synctest bubbles on fake time.
package testutil

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Network is an in-memory datagram network.
type Network struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*Conn
	rnd   *rand.Rand
	// Loss and Dup are probabilities per datagram; Delay is the base
	// one-way latency and Jitter adds a uniform random extra, which
	// reorders datagrams.
	Loss, Dup     float64
	Delay, Jitter time.Duration
	// Filter, if set, sees every datagram and may drop it (return false).
	Filter func(from, to netip.AddrPort, b []byte) bool

	Sent, Dropped, Delivered int
	seq                      uint64
}

// NewNetwork returns a network with a seeded random source.
func NewNetwork(seed uint64) *Network {
	return &Network{conns: map[netip.AddrPort]*Conn{}, rnd: rand.New(rand.NewPCG(seed, ^seed))}
}

// Listen attaches a connection at addr ("10.0.0.1:1935").
func (n *Network) Listen(addr string) *Conn {
	ap := netip.MustParseAddrPort(addr)
	c := &Conn{n: n, addr: ap, in: make(chan datagram, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[ap] = c
	n.mu.Unlock()
	return c
}

type datagram struct {
	from netip.AddrPort
	b    []byte
}

func (n *Network) send(from, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	n.Sent++
	if n.Filter != nil && !n.Filter(from, to, b) || n.rnd.Float64() < n.Loss {
		n.Dropped++
		n.mu.Unlock()
		return
	}
	copies := 1
	if n.rnd.Float64() < n.Dup {
		copies = 2
	}
	delays := make([]time.Duration, copies)
	for i := range delays {
		delays[i] = n.Delay
		if n.Jitter > 0 {
			delays[i] += time.Duration(n.rnd.Int64N(int64(n.Jitter)))
		}
	}
	c := n.conns[to]
	if c == nil {
		n.mu.Unlock()
		return
	}
	now := time.Now()
	for _, d := range delays {
		n.seq++
		c.pending = append(c.pending, timed{due: now.Add(d), seq: n.seq, p: datagram{from, append([]byte(nil), b...)}})
	}
	// Keep the queue ordered by (due, send order) so that datagrams with
	// equal delays arrive in the order they were sent, as on a real link.
	sort.Slice(c.pending, func(i, j int) bool {
		a, b := c.pending[i], c.pending[j]
		return a.due.Before(b.due) || a.due.Equal(b.due) && a.seq < b.seq
	})
	c.armLocked(now)
	n.mu.Unlock()
}

type timed struct {
	due time.Time
	seq uint64
	p   datagram
}

// armLocked makes sure a timer fires for the queue head; n.mu held.
func (c *Conn) armLocked(now time.Time) {
	if len(c.pending) == 0 {
		return
	}
	head := c.pending[0].due
	if c.timer != nil && !c.armedFor.After(head) {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.armedFor = head
	c.timer = time.AfterFunc(head.Sub(now), c.fire)
}

// fire delivers every due datagram in order.
func (c *Conn) fire() {
	n := c.n
	n.mu.Lock()
	now := time.Now()
	var due []datagram
	for len(c.pending) > 0 && !c.pending[0].due.After(now) {
		due = append(due, c.pending[0].p)
		c.pending = c.pending[1:]
	}
	c.timer = nil
	c.armLocked(now)
	n.mu.Unlock()
	for _, p := range due {
		c.deliver(p)
	}
}

// Conn is one endpoint on a Network.
type Conn struct {
	n        *Network
	addr     netip.AddrPort
	in       chan datagram
	closed   chan struct{}
	once     sync.Once
	pending  []timed // guarded by n.mu
	timer    *time.Timer
	armedFor time.Time
}

func (c *Conn) deliver(p datagram) {
	select {
	case <-c.closed:
	case c.in <- p:
		c.n.mu.Lock()
		c.n.Delivered++
		c.n.mu.Unlock()
	default: // queue full: dropped, like a socket buffer
	}
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), net.UDPAddrFromAddrPort(p.from), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("memnet: not a UDP address")
	}
	to := ua.AddrPort()
	c.n.mu.Lock()
	from := c.addr
	c.n.mu.Unlock()
	c.n.send(from, netip.AddrPortFrom(to.Addr().Unmap(), to.Port()), b)
	return len(b), nil
}

// Close implements net.PacketConn.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.n.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.pending = nil
		if c.n.conns[c.addr] == c {
			delete(c.n.conns, c.addr)
		}
		c.n.mu.Unlock()
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.AddrPort()) }

// AddrPort is the connection's address.
func (c *Conn) AddrPort() netip.AddrPort {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	return c.addr
}

// SetDeadline and friends are accepted and ignored: the engine never sets
// deadlines; Close unblocks readers.
func (c *Conn) SetDeadline(time.Time) error      { return nil }
func (c *Conn) SetReadDeadline(time.Time) error  { return nil }
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// Rebind moves a connection to a new address, as a NAT rebinding would:
// the far end sees its datagrams come from addr from now on.
func (n *Network) Rebind(c *Conn, addr string) {
	ap := netip.MustParseAddrPort(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	c.addr = ap
	n.conns[ap] = c
}

// SetFilter replaces the filter under the network's lock.
func (n *Network) SetFilter(f func(from, to netip.AddrPort, b []byte) bool) {
	n.mu.Lock()
	n.Filter = f
	n.mu.Unlock()
}

// ErrTimeout is returned by ReadTimeout.
var ErrTimeout = errors.New("memnet: read timeout")

// ReadTimeout reads one datagram or gives up after d.
func (c *Conn) ReadTimeout(d time.Duration) ([]byte, netip.AddrPort, error) {
	select {
	case p := <-c.in:
		return p.b, p.from, nil
	case <-c.closed:
		return nil, netip.AddrPort{}, net.ErrClosed
	case <-time.After(d):
		return nil, netip.AddrPort{}, ErrTimeout
	}
}

// Inject delivers a datagram to to as if it came from from, which need not
// be attached: a spoofed source.
func (n *Network) Inject(from, to netip.AddrPort, b []byte) {
	n.send(from, to, b)
}
