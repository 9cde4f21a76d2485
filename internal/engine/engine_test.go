package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
)

func serverEngine(t testing.TB, conn net.PacketConn, cfg Config) *Engine {
	t.Helper()
	return testEngine(t, conn, cfg, handshake.NewServerIdentity)
}

func clientEngine(t testing.TB, conn net.PacketConn, cfg Config) *Engine {
	t.Helper()
	return testEngine(t, conn, cfg, handshake.NewClientIdentity)
}

// testEngine starts an engine on conn with a fresh identity from newID.
func testEngine(t testing.TB, conn net.PacketConn, cfg Config, newID func(io.Reader) (*handshake.Identity, error)) *Engine {
	t.Helper()
	id, err := newID(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity = id
	e, err := New(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// loopbackUDP opens a UDP socket on 127.0.0.1 (the engine using it closes it).
func loopbackUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// makeMessages returns messages of random sizes (0 to 3000 bytes, some up
// to 20 KiB so they fragment) adding up to total bytes, each starting with
// its index.
func makeMessages(total int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed))
	var out [][]byte
	for n := 0; n < total; {
		size := r.IntN(3000)
		if len(out)%37 == 0 {
			size = 20000 + r.IntN(2000)
		}
		m := make([]byte, 4+size)
		binary.BigEndian.PutUint32(m, uint32(len(out)))
		for i := 4; i < len(m); i++ {
			m[i] = byte(r.Uint32())
		}
		out = append(out, m)
		n += len(m)
	}
	return out
}

// streamAndClose connects client to server, streams msgs over one flow,
// checks byte-exact in-order delivery, then closes the flow and the session
// in an orderly way.
func streamAndClose(t *testing.T, client, server *Engine, serverAddr netip.AddrPort, msgs [][]byte, waitFarClose bool) {
	ctx := context.Background()
	start := time.Now()
	sess, err := client.Connect(ctx, handshake.AncillaryEPD("rtmfp://"+serverAddr.String()+"/app"), ConnectOptions{}, serverAddr)
	if err != nil {
		t.Fatal("connect:", err)
	}
	ss, err := server.Accept(ctx)
	if err != nil {
		t.Fatal("accept:", err)
	}
	if ss.PeerID() != client.Identity().PeerID || sess.PeerID() != server.Identity().PeerID {
		t.Fatal("peer IDs disagree with certificates")
	}
	if !bytes.Equal(sess.NearNonce(), ss.FarNonce()) || !bytes.Equal(sess.FarNonce(), ss.NearNonce()) {
		t.Fatal("nonces disagree")
	}
	f, err := sess.OpenFlow([]byte("TEST-FLOW"), nil)
	if err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := f.Write(m); err != nil {
				writeErr <- err
				return
			}
		}
		f.Close()
		writeErr <- f.WaitComplete(ctx)
	}()
	rf, err := ss.AcceptFlow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(rf.Metadata()) != "TEST-FLOW" {
		t.Fatalf("metadata %q", rf.Metadata())
	}
	for i := 0; ; i++ {
		m, err := rf.Read(ctx)
		if err == io.EOF {
			if i != len(msgs) {
				t.Fatalf("EOF after %d of %d messages", i, len(msgs))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(msgs) || !bytes.Equal(m, msgs[i]) {
			t.Fatalf("message %d differs (got %d bytes)", i, len(m))
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal("writer:", err)
	}
	t.Logf("transfer done after %v (srtt %v)", time.Since(start), sess.SRTT())
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sess.Close(cctx); err != nil {
		t.Fatal("close:", err)
	}
	if !ss.Closing() {
		t.Fatal("server side is not closing")
	}
	if waitFarClose {
		select {
		case <-ss.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("server side did not close")
		}
	}
}

func TestStreamInMemory(t *testing.T) {
	for _, c := range []struct {
		loss, dup float64
		jitter    time.Duration
	}{{0, 0, 0}, {0.10, 0.02, 5 * time.Millisecond}, {0.30, 0.05, 10 * time.Millisecond}} {
		t.Run(fmt.Sprintf("loss%.0f", c.loss*100), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := testutil.NewNetwork(uint64(c.loss*100) + 1)
				n.Loss, n.Dup, n.Delay, n.Jitter = c.loss, c.dup, 10*time.Millisecond, c.jitter
				sc, cc := n.Listen("10.0.0.1:1935"), n.Listen("10.0.0.2:5000")
				server := serverEngine(t, sc, Config{})
				client := clientEngine(t, cc, Config{})
				start := time.Now()
				msgs := makeMessages(10<<20, 7)
				streamAndClose(t, client, server, sc.AddrPort(), msgs, true)
				t.Logf("10 MiB, %d messages, in %v simulated; %d datagrams sent, %d dropped", len(msgs), time.Since(start), n.Sent, n.Dropped)
				client.Close()
				server.Close()
			})
		})
	}
}

func TestStreamLoopbackUDP(t *testing.T) {
	defer goleak.VerifyNone(t)
	sc, cc := loopbackUDP(t), loopbackUDP(t)
	server := serverEngine(t, sc, Config{})
	client := clientEngine(t, cc, Config{})
	defer server.Close()
	defer client.Close()
	start := time.Now()
	streamAndClose(t, client, server, sc.LocalAddr().(*net.UDPAddr).AddrPort(), makeMessages(10<<20, 9), false)
	t.Logf("10 MiB over loopback in %v", time.Since(start))
}

// One server engine multiplexes many concurrent client sessions, each
// exchanging messages, over real loopback UDP.
func TestManySessionsLoopback(t *testing.T) {
	defer goleak.VerifyNone(t)
	sc := loopbackUDP(t)
	server := serverEngine(t, sc, Config{})
	defer server.Close()
	addr := sc.LocalAddr().(*net.UDPAddr).AddrPort()
	go func() { // echo every message back on a return flow
		for {
			s, err := server.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				rf, err := s.AcceptFlow(context.Background())
				if err != nil {
					return
				}
				back, _ := s.OpenFlow([]byte("echo"), rf)
				for {
					m, err := rf.Read(context.Background())
					if err != nil {
						back.Close()
						return
					}
					back.Write(m)
				}
			}()
		}
	}()
	const clients, msgs = 40, 20
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			cc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				errs <- err
				return
			}
			c := clientEngine(t, cc, Config{})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := c.Connect(ctx, handshake.AncillaryEPD("rtmfp://127.0.0.1/app"), ConnectOptions{}, addr)
			if err != nil {
				errs <- err
				return
			}
			f, _ := s.OpenFlow([]byte("m"), nil)
			for j := range msgs {
				f.Write([]byte(fmt.Sprintf("client %d message %d", i, j)))
			}
			rf, err := s.AcceptFlow(ctx)
			if err != nil {
				errs <- err
				return
			}
			for j := range msgs {
				m, err := rf.Read(ctx)
				if err != nil || string(m) != fmt.Sprintf("client %d message %d", i, j) {
					errs <- fmt.Errorf("client %d: %q %v", i, m, err)
					return
				}
			}
			errs <- s.Close(ctx)
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := server.Stats().HandshakesOK; got != clients {
		t.Fatalf("%d handshakes, want %d", got, clients)
	}
}

// queuedEventBytes is what waits for the event callbacks, over all shards.
func (e *Engine) queuedEventBytes() int {
	n := 0
	for _, sh := range e.shards {
		sh.mu.Lock()
		n += sh.evBytes
		sh.mu.Unlock()
	}
	return n
}
