package server_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// groupClient is a NetGroup client made by hand from the project's engine
// and Flash codecs: it connects like Flash, opens GC flows itself and
// records every message the server sends on its GC flows.
type groupClient struct {
	t       testing.TB
	e       *engine.Engine
	sess    *engine.Session
	id      *handshake.Identity
	srvCtrl *engine.RecvFlow // the server's NetConnection flow

	hub *hub
	// onMember, if set before the first join, is called (on a reading
	// goroutine) for each peer announced.
	onMember func(peer [32]byte)

	mu   sync.Mutex
	got  map[uint64][][]byte // messages on the server's GC flow answering our flow ID
	meta map[uint64][]byte   // that flow's metadata
}

// hub wakes a test whenever any of its clients receives a GC message.
type hub struct {
	mu      sync.Mutex
	changed chan struct{}
}

func newHub() *hub { return &hub{changed: make(chan struct{})} }

func (h *hub) signal() {
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// waitFor waits, woken by each message any client of the hub receives,
// until cond holds.
func (h *hub) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// shortIdentity is a client identity with a short private exponent: a
// cheap handshake for tests with many clients.
func shortIdentity(t testing.TB) *handshake.Identity {
	kp, err := handshake.GenerateKeyBits(handshake.Group2, 96, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := handshake.IdentityFromKey(kp)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newGroupClient connects to the server at addr with developer key key.
func newGroupClient(t testing.TB, h *hub, addr netip.AddrPort, key string) *groupClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &groupClient{t: t, id: shortIdentity(t), hub: h, got: map[uint64][][]byte{}, meta: map[uint64][]byte{}}
	c.e, err = engine.New(conn, engine.Config{Identity: c.id, EphemeralKeys: -1, Keepalive: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "rtmfp://" + addr.String() + "/" + key
	c.sess, err = c.e.Connect(ctx, handshake.AncillaryEPD(url), engine.ConnectOptions{Introducer: true}, addr)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := c.sess.OpenFlow(flash.TCMetadata(0, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := flash.AppendCommand(nil, "connect", 1, amf.NewObject("app", key, "tcUrl", url, "objectEncoding", 3.0))
	ctrl.Write(msg)
	connected := make(chan string, 1)
	go c.accept(connected)
	select {
	case code := <-connected:
		if code != flash.ConnectSuccess {
			t.Fatalf("connect: %s", code)
		}
	case <-ctx.Done():
		t.Fatal("no answer to connect")
	}
	return c
}

// accept reads every flow the server opens.
func (c *groupClient) accept(connected chan<- string) {
	for {
		f, err := c.sess.AcceptFlow(context.Background())
		if err != nil {
			return
		}
		if md, ok := flash.ParseTCMetadata(f.Metadata()); ok && md.StreamID == 0 {
			c.mu.Lock()
			c.srvCtrl = f
			c.mu.Unlock()
			go readAll(f, func(raw []byte) {
				m, err := flash.ParseMessage(raw)
				if err != nil || !m.IsCommand() {
					return
				}
				if cmd, err := flash.ParseCommand(m); err == nil && cmd.Name == "_result" {
					for _, a := range cmd.Args {
						if o, ok := a.(*amf.Object); ok {
							code, _, _ := flash.InfoCode(o)
							select {
							case connected <- code:
							default:
							}
						}
					}
				}
			})
			continue
		}
		assoc, _ := f.Assoc()
		c.mu.Lock()
		c.meta[assoc] = f.Metadata()
		c.mu.Unlock()
		go readAll(f, func(raw []byte) {
			c.mu.Lock()
			c.got[assoc] = append(c.got[assoc], raw)
			c.mu.Unlock()
			if p, ok := flash.ParseGroupMember(raw); ok && c.onMember != nil {
				c.onMember(p)
			}
			c.hub.signal()
		})
	}
}

// readAll calls fn with each message of f until the flow or session ends.
func readAll(f *engine.RecvFlow, fn func([]byte)) {
	for {
		raw, err := f.Read(context.Background())
		if err != nil {
			return
		}
		fn(raw)
	}
}

// peerID is the client's peer ID.
func (c *groupClient) peerID() [32]byte { return c.id.PeerID }

// open opens a GC flow, associated with the server's NetConnection flow
// as Flash does (profile §2.4 row 5).
func (c *groupClient) open() *engine.SendFlow {
	c.t.Helper()
	c.mu.Lock()
	ctrl := c.srvCtrl
	c.mu.Unlock()
	f, err := c.sess.OpenFlow(flash.GroupMetadata, ctrl)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// sendAcked writes msg on f and waits until the server acknowledged it:
// from then on the server's handling of it comes before that of anything
// sent later (its event is queued when the message is complete).
func (c *groupClient) sendAcked(f *engine.SendFlow, msg []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := f.WriteMessage(ctx, msg, time.Time{})
	if err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-ctx.Done():
		c.t.Fatal("message never acknowledged")
	}
}

// waitRefused waits until the server refuses f.
func (c *groupClient) waitRefused(f *engine.SendFlow, what string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.WaitComplete(ctx)
	if r, _ := f.Rejected(); !r {
		c.t.Fatalf("%s: flow not refused", what)
	}
}

// join opens a GC flow and sends the join by group ID.
func (c *groupClient) join(id [32]byte) *engine.SendFlow {
	c.t.Helper()
	f := c.open()
	if err := f.Write(flash.AppendGroupJoin(nil, id)); err != nil {
		c.t.Fatal(err)
	}
	return f
}

// messages returns what the server sent on its GC flow answering f.
func (c *groupClient) messages(f *engine.SendFlow) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got[f.ID()]...)
}

// announced returns the peers announced on the GC flow answering f.
func (c *groupClient) announced(f *engine.SendFlow) map[[32]byte]int {
	out := map[[32]byte]int{}
	for _, m := range c.messages(f) {
		if p, ok := flash.ParseGroupMember(m); ok {
			out[p]++
		}
	}
	return out
}

// total counts every message received on any GC flow.
func (c *groupClient) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ms := range c.got {
		n += len(ms)
	}
	return n
}

// metricValues reads a counter or gauge family by one label's values
// ("" for a metric without labels).
func metricValues(t testing.TB, g prometheus.Gatherer, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			k := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					k = l.GetValue()
				}
			}
			out[k] += v
		}
	}
	return out
}

// lookupAnswer sends an IHello for peerID from a socket with no session
// and returns the addresses of the Redirect that comes back (ok false if
// none came within a second).
func lookupAnswer(t testing.TB, server netip.AddrPort, peerID [32]byte) ([]wire.Address, bool) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tag := []byte("dead-lookup-0123")
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
	pkt = wire.IHello{EPD: handshake.FingerprintEPD(peerID), Tag: tag}.Append(pkt)
	conn.WriteToUDPAddrPort(wire.NewDefaultSealer().Seal(nil, 0, pkt), server)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, false
		}
		pt, err := wire.NewDefaultOpener().Open(buf[:n])
		if err != nil {
			continue
		}
		_, hl, _ := wire.ParseHeader(pt)
		if c, _, ok := wire.NextChunk(pt[hl:]); ok && c.Type == wire.ChunkRedirect {
			if rd, err := wire.ParseRedirect(c.Payload); err == nil && string(rd.Tag) == string(tag) {
				return rd.Addresses, true
			}
		}
	}
}
