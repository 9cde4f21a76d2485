package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// panicky panics on the first message of every flow whose metadata is
// "PANIC", and records what else it sees.
type panicky struct {
	opened   chan *Session
	messages chan []byte
}

func (p *panicky) SessionOpened(s *Session) { p.opened <- s }
func (p *panicky) FlowOpened(*RecvFlow)     {}
func (p *panicky) Message(f *RecvFlow, msg []byte) {
	if string(f.Metadata()) == "PANIC" {
		panic("a handler bug: a kind of flow it did not expect")
	}
	p.messages <- msg
}
func (p *panicky) FlowClosed(*RecvFlow)                    {}
func (p *panicky) SessionClosed(*Session, error)           {}
func (p *panicky) AddressChanged(*Session, netip.AddrPort) {}

// A callback that panics aborts its own session, is counted, and leaves
// the engine and every other session running.
func TestPanickingHandlerAbortsOnlyItsSession(t *testing.T) {
	defer goleak.VerifyNone(t)
	sc := loopbackUDP(t)
	h := &panicky{opened: make(chan *Session, 4), messages: make(chan []byte, 4)}
	server := serverEngine(t, sc, Config{Events: h})
	defer server.Close()
	addr := sc.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() (*Engine, *Session) {
		c := clientEngine(t, loopbackUDP(t), Config{})
		s, err := c.Connect(ctx, handshake.AncillaryEPD("rtmfp://x/app"), ConnectOptions{}, addr)
		if err != nil {
			t.Fatal(err)
		}
		<-h.opened
		return c, s
	}
	bad, badSess := dial()
	defer bad.Close()
	good, goodSess := dial()
	defer good.Close()

	f, _ := badSess.OpenFlow([]byte("PANIC"), nil)
	f.Write([]byte("boom"))
	<-badSess.Done() // aborted by the server
	if n := server.Stats().EventPanics; n != 1 {
		t.Fatalf("%d panics counted", n)
	}
	g, _ := goodSess.OpenFlow([]byte("FINE"), nil)
	g.Write([]byte("still here"))
	select {
	case m := <-h.messages:
		if string(m) != "still here" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("the other session stopped being served")
	}
}

type failingReader struct{ fail atomic.Bool }

func (r *failingReader) Read(b []byte) (int, error) {
	if r.fail.Load() {
		return 0, errors.New("entropy gone")
	}
	for i := range b {
		b[i] = byte(i * 7)
	}
	return len(b), nil
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// A random source that fails, or gives nothing usable, makes newSID fail
// instead of spinning forever under the engine lock.
func TestSessionIDWithBrokenRandom(t *testing.T) {
	for name, r := range map[string]io.Reader{"failing": &failingReader{}, "zeros": zeroReader{}} {
		if fr, ok := r.(*failingReader); ok {
			fr.fail.Store(true)
		}
		own := func(sid uint32) uint32 { return sid }
		if _, err := randomSID(r, own, func(uint32) bool { return false }); !errors.Is(err, ErrRandom) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// brokenConn fails every read with a non-timeout error.
type brokenConn struct {
	net.PacketConn
	reads  atomic.Int64
	closed chan struct{}
}

func (c *brokenConn) ReadFrom([]byte) (int, net.Addr, error) {
	c.reads.Add(1)
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	return 0, nil, errors.New("socket broken")
}
func (c *brokenConn) Close() error { close(c.closed); return nil }

// A socket whose reads keep failing is retried with a backoff, not in a
// loop that eats a core.
func TestReadErrorsBackOff(t *testing.T) {
	defer goleak.VerifyNone(t)
	udp := loopbackUDP(t)
	defer udp.Close()
	c := &brokenConn{PacketConn: udp, closed: make(chan struct{})}
	e := serverEngine(t, c, Config{})
	time.Sleep(500 * time.Millisecond)
	e.Close()
	// Without the backoff this is millions; with it, 3 at once and then
	// 1, 2, 4, ... 256 ms apart: about 10 in half a second.
	if n := c.reads.Load(); n > 50 {
		t.Fatalf("%d reads in 0.5 s of a broken socket", n)
	}
}
