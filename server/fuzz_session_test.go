package server

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/store"
)

// connectedHarness is a server on an in-memory network with clients that
// completed connect, so that fuzzed input reaches the command handlers
// only connected clients get to.
type connectedHarness struct {
	t         testing.TB
	net       *testutil.Network
	srv       *Server
	e         *engine.Engine
	srvAddr   netip.AddrPort
	connected chan string
	port      int
	clients   map[*client]*engine.Engine // each client's own engine
}

func newConnectedHarness(t testing.TB) *connectedHarness {
	n := testutil.NewNetwork(7)
	conn := n.Listen("10.0.0.1:1935")
	h := &connectedHarness{t: t, net: n, srvAddr: conn.AddrPort(), connected: make(chan string, 64), port: 5000,
		clients: map[*client]*engine.Engine{}}
	srv, err := New(Config{Store: store.NewMemory(), Open: true, HelloRate: -1, HandshakeRate: -1, HelloRatePerPrefix: -1,
		OnSession: func(ev SessionEvent) {
			if ev.Kind == SessionConnected {
				h.connected <- ev.PeerID
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, e := range h.clients {
			e.Close()
		}
		srv.Close()
	})
	h.srv, h.e = srv, srv.engineList()[0]
	return h
}

// client opens a session from a fresh address, connects it, and returns
// the server's state for it.
func (h *connectedHarness) client() *client {
	h.port++
	conn := h.net.Listen(fmt.Sprintf("10.0.0.2:%d", h.port))
	id, _ := handshake.NewClientIdentity(nil)
	e, err := engine.New(conn, engine.Config{Identity: id})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := e.Connect(ctx, handshake.AncillaryEPD("rtmfp://10.0.0.1/fuzz"), engine.ConnectOptions{}, h.srvAddr)
	if err != nil {
		h.t.Fatal(err)
	}
	f, _ := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	msg, _ := flash.AppendCommand(nil, "connect", 1, amf.NewObject("app", "fuzz", "objectEncoding", 3.0))
	f.Write(msg)
	want := hexID(id.PeerID)
	for {
		select {
		case got := <-h.connected:
			if got != want {
				continue
			}
		case <-ctx.Done():
			h.t.Fatal("no connect")
		}
		break
	}
	var c *client
	h.e.Run(func() {
		for _, s := range h.e.Sessions() {
			if x, ok := s.Value().(*client); ok && x.peerID == id.PeerID {
				c = x
			}
		}
	})
	if c == nil {
		h.t.Fatal("the server has no state for the client")
	}
	h.clients[c] = e
	return c
}

// replace drops a client the server closed and connects a new one.
func (h *connectedHarness) replace(c *client) *client {
	if e := h.clients[c]; e != nil {
		e.Close()
		delete(h.clients, c)
	}
	return h.client()
}

// commandWith builds a command message whose name is valid and whose
// arguments are the fuzzer's bytes after the given leading values.
func commandWith(name string, lead []any, rest []byte) []byte {
	msg, _ := flash.AppendCommand(nil, name, 0, nil, lead...)
	return append(msg, rest...)
}

// FuzzConnectedSession fuzzes what a connected client can send the server:
// raw NetConnection messages, commands the server serves (setPeerInfo,
// relay, createStream, deleteStream, the exchange calls, unknown ones)
// with hostile AMF arguments, and messages on a server NetStream. The
// messages go through the server's event handlers on its dispatcher, as
// received messages do.
func FuzzConnectedSession(f *testing.F) {
	h := newConnectedHarness(f)
	c := h.client()
	peer := h.client() // a relay target
	f.Add(byte(0), []byte{0x14, 0, 0, 0, 0, 0x02, 0, 3, 'f', 'o', 'o'})
	f.Add(byte(1), []byte{0x02, 0x00, 0x0f, '1', '9', '2', '.', '0', '.', '2', '.', '1', ':', '5', '0', '0', '0'})
	f.Add(byte(2), []byte{0x02, 0x00, 0x02, 'h', 'i', 0x00, 0x40, 0x45, 0, 0, 0, 0, 0, 0})
	f.Add(byte(3), []byte{})
	f.Add(byte(4), []byte{0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0})
	f.Add(byte(5), []byte{0x02, 0x00, 0x01, 'a'})
	f.Add(byte(8), []byte{0x14, 0, 0, 0, 0, 0x02, 0, 4, 'p', 'l', 'a', 'y', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x02, 0, 1, 'x'})
	names := []string{"setPeerInfo", "relay", "createStream", "deleteStream", "stratus.exchange.register",
		"stratus.exchange.lookup", "stratus.exchange.unregister", "noSuchMethod"}
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		h.t = t // a client made during this input fails this input
		if len(b) > 8192 {
			return
		}
		var msg []byte
		stream := false
		switch k := int(kind) % (len(names) + 2); {
		case k == 0:
			msg = b // a whole raw NetConnection message
		case k == len(names)+1:
			msg, stream = b, true // a message on server NetStream 1
		case names[k-1] == "relay":
			msg = commandWith("relay", []any{hexID(peer.peerID)}, b)
		default:
			msg = commandWith(names[k-1], nil, b)
		}
		h.e.Run(func() {
			if stream {
				if m, err := flash.ParseMessage(msg); err == nil {
					c.onStream(1, m)
				}
				return
			}
			(*events)(h.srv).Message(c.ctrlIn, msg)
		})
		var state clientState
		h.e.Run(func() { state = c.state })
		if state != connected { // a second connect closes, as it should
			c = h.replace(c)
		}
		if st := h.srv.EngineStats(); st.HandlerPanics != 0 {
			t.Fatalf("a handler panicked on %x", msg)
		}
	})
}
