package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// rebindingProxy relays a client's datagrams to a server from a socket it
// can swap (the client's NAT mapping changing) and the server's answers
// back to the client.
type rebindingProxy struct {
	front  *net.UDPConn // the client talks to this
	server netip.AddrPort
	mu     sync.Mutex
	back   *net.UDPConn   // towards the server, swapped by rebind
	backs  []*net.UDPConn // every one used
	client netip.AddrPort
	wg     sync.WaitGroup
}

func newRebindingProxy(t *testing.T, server netip.AddrPort) *rebindingProxy {
	p := &rebindingProxy{front: loopbackUDP(t), server: server}
	p.rebind(t)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, src, err := p.front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = src
			back := p.back
			p.mu.Unlock()
			back.WriteToUDPAddrPort(buf[:n], p.server)
		}
	}()
	return p
}

// rebind moves the proxy's server side to a new socket (a new source
// address for the server).
func (p *rebindingProxy) rebind(t *testing.T) {
	back := loopbackUDP(t)
	p.mu.Lock()
	p.back = back
	p.backs = append(p.backs, back)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := back.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			c := p.client
			p.mu.Unlock()
			p.front.WriteToUDPAddrPort(buf[:n], c)
		}
	}()
}

func (p *rebindingProxy) addr() netip.AddrPort { return p.front.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *rebindingProxy) close() {
	p.front.Close()
	p.mu.Lock()
	for _, b := range p.backs {
		b.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// echoEvents echoes every message back on a return flow.
type echoEvents struct {
	opened atomic.Int64
}

func (h *echoEvents) SessionOpened(*Session) { h.opened.Add(1) }
func (h *echoEvents) FlowOpened(*RecvFlow)   {}
func (h *echoEvents) Message(f *RecvFlow, msg []byte) {
	out, _ := f.Session().OpenFlow([]byte("echo"), f)
	out.TryWrite(msg)
}
func (h *echoEvents) FlowClosed(*RecvFlow)                    {}
func (h *echoEvents) SessionClosed(*Session, error)           {}
func (h *echoEvents) AddressChanged(*Session, netip.AddrPort) {}

// Sessions spread over the shards, each shard's sessions are served by
// it, and a client whose address changes mid-session keeps its session:
// with the kernel steering session packets by ID (and, without it, with
// the shards forwarding them).
func TestShards(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_REUSEPORT shards are Linux's")
	}
	for _, steer := range []bool{true, false} {
		t.Run(fmt.Sprintf("steered=%v", steer), func(t *testing.T) {
			defer goleak.VerifyNone(t)
			noSteering = !steer
			defer func() { noSteering = false }()
			sc := loopbackUDP(t)
			server := serverEngine(t, sc, Config{Shards: 4, Events: &echoEvents{}})
			defer server.Close()
			if st := server.Stats(); st.Shards != 4 || server.steered != steer {
				t.Fatalf("%d shards, steered %v", st.Shards, server.steered)
			}
			addr := sc.LocalAddr().(*net.UDPAddr).AddrPort()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			const clients = 12
			var proxies []*rebindingProxy
			defer func() {
				for _, p := range proxies {
					p.close()
				}
			}()
			type peer struct {
				e *Engine
				s *Session
			}
			var peers []peer
			for range clients {
				p := newRebindingProxy(t, addr)
				proxies = append(proxies, p)
				c := clientEngine(t, loopbackUDP(t), Config{})
				defer c.Close()
				s, err := c.Connect(ctx, handshake.AncillaryEPD("rtmfp://x/app"), ConnectOptions{}, p.addr())
				if err != nil {
					t.Fatal(err)
				}
				peers = append(peers, peer{c, s})
			}
			perShard := make([]int, len(server.shards))
			for i, sh := range server.shards {
				sh.mu.Lock()
				perShard[i] = len(sh.sessions)
				for sid := range sh.sessions {
					if server.shardFor(sid) != sh {
						t.Errorf("session %08x lives in shard %d", sid, i)
					}
				}
				sh.mu.Unlock()
			}
			used := 0
			for _, n := range perShard {
				if n > 0 {
					used++
				}
			}
			if used < 2 {
				t.Fatalf("sessions per shard %v: the kernel spread nothing", perShard)
			}
			echo := func(i int, msg string) {
				f, err := peers[i].s.OpenFlow([]byte("M"), nil)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte(msg))
				rf, err := peers[i].s.AcceptFlow(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if m, err := rf.Read(ctx); err != nil || string(m) != msg {
					t.Fatalf("client %d: echo %q, %v", i, m, err)
				}
			}
			for i := range peers {
				echo(i, fmt.Sprint("before ", i))
			}
			before := server.Stats().Forwarded
			for _, p := range proxies {
				p.rebind(t)
			}
			for i := range peers {
				echo(i, fmt.Sprint("after ", i))
			}
			forwarded := server.Stats().Forwarded - before
			if steer && forwarded != 0 {
				t.Fatalf("%d datagrams forwarded between shards although the kernel steers them", forwarded)
			}
			if !steer && forwarded == 0 {
				t.Fatal("no datagram forwarded: the moved clients' new addresses all hashed to their own shards?")
			}
			t.Logf("sessions per shard %v; %d datagrams forwarded after the moves", perShard, forwarded)
		})
	}
}
