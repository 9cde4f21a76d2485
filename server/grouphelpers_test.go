package server_test

import (
	"bytes"
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
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// groupClient is a NetGroup client made by hand from the project's engine
// and Flash codecs: it connects like Flash, opens GC flows itself and
// records every message the server sends on its GC flows.
type groupClient struct {
	t       testing.TB
	e       *engine.Engine
	conn    *tapConn
	sess    *engine.Session
	id      *handshake.Identity
	srvCtrl *engine.RecvFlow // the server's NetConnection flow

	hub *hub
	// onMember, if set before the first join, is called (on a reading
	// goroutine) for each peer announced.
	onMember func(peer [32]byte)
	// stall, if set before the first join, leaves the server's GC flows
	// unread: a client that stops acknowledging them.
	stall bool

	mu   sync.Mutex
	got  map[uint64][][]byte // messages on the server's GC flow answering our flow ID
	meta map[uint64][]byte   // that flow's metadata
}

// hub wakes a test whenever any of its clients receives a GC message.
type hub = servertest.Changes

func newHub() *hub { return &hub{} }

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

// newGroupClient connects to the server at addr with developer key key;
// mods change its engine's configuration.
func newGroupClient(t testing.TB, h *hub, addr netip.AddrPort, key string, mods ...func(*engine.Config)) *groupClient {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &groupClient{t: t, id: shortIdentity(t), hub: h, got: map[uint64][][]byte{}, meta: map[uint64][]byte{}, conn: newTapConn(conn)}
	cfg := engine.Config{Identity: c.id, EphemeralKeys: -1, Keepalive: 5 * time.Second}
	for _, m := range mods {
		m(&cfg)
	}
	c.id = cfg.Identity
	c.e, err = engine.New(c.conn, cfg)
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
		stall := c.stall
		c.mu.Unlock()
		if stall {
			continue
		}
		go readAll(f, func(raw []byte) {
			c.mu.Lock()
			c.got[assoc] = append(c.got[assoc], raw)
			c.mu.Unlock()
			if p, ok := flash.ParseGroupMember(raw); ok && c.onMember != nil {
				c.onMember(p)
			}
			c.hub.Signal()
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
	f, err := c.tryOpen()
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *groupClient) tryOpen() (*engine.SendFlow, error) {
	c.mu.Lock()
	ctrl := c.srvCtrl
	c.mu.Unlock()
	return c.sess.OpenFlow(flash.GroupMetadata, ctrl)
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
	f, err := c.tryJoin(id)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// tryJoin is join for other goroutines than the test's (t.Fatal may only
// be called on the test's own).
func (c *groupClient) tryJoin(id [32]byte) (*engine.SendFlow, error) {
	f, err := c.tryOpen()
	if err != nil {
		return nil, err
	}
	return f, f.Write(flash.AppendGroupJoin(nil, id))
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

// lookupPacket is an IHello for peerID with tag, as an initiator with no
// session sends it (session ID 0, the default key).
func lookupPacket(peerID [32]byte, tag []byte) []byte {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
	pkt = wire.IHello{EPD: handshake.FingerprintEPD(peerID), Tag: tag}.Append(pkt)
	return wire.NewDefaultSealer().Seal(nil, 0, pkt)
}

// redirectIn returns the Redirect a datagram carries, if it does (d is
// left as it was: opening decrypts in place).
func redirectIn(d []byte) (wire.Redirect, bool) {
	if sid, err := wire.SessionID(d); err != nil || sid != 0 {
		return wire.Redirect{}, false
	}
	pt, err := wire.NewDefaultOpener().Open(append([]byte(nil), d...))
	if err != nil {
		return wire.Redirect{}, false
	}
	_, hl, err := wire.ParseHeader(pt)
	if err != nil {
		return wire.Redirect{}, false
	}
	c, _, ok := wire.NextChunk(pt[hl:])
	if !ok || c.Type != wire.ChunkRedirect {
		return wire.Redirect{}, false
	}
	rd, err := wire.ParseRedirect(c.Payload)
	return rd, err == nil
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
	conn.WriteToUDPAddrPort(lookupPacket(peerID, tag), server)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, false
		}
		if rd, ok := redirectIn(buf[:n]); ok && string(rd.Tag) == string(tag) {
			return rd.Addresses, true
		}
	}
}

// tapConn is a client's socket with a tap on what it reads: the Redirects
// answering the test's own lookups go to redirects, not to the engine.
// The test's lookups leave from the client's address, so that the server
// takes them for the connected client's (the real-client path).
type tapConn struct {
	*net.UDPConn
	redirects chan wire.Redirect
}

func newTapConn(c *net.UDPConn) *tapConn {
	return &tapConn{UDPConn: c, redirects: make(chan wire.Redirect, 64)}
}

func (c *tapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.ReadFromUDPAddrPort(b) // an IPv4 address, not v4-in-v6
		if err != nil {
			return n, nil, err
		}
		if rd, ok := redirectIn(b[:n]); ok && bytes.HasPrefix(rd.Tag, lookupTagPrefix) {
			c.redirects <- rd
			continue
		}
		return n, net.UDPAddrFromAddrPort(a), nil
	}
}

var lookupTagPrefix = []byte("test-lookup-")

// lookups sends lookups of each peer ID in turn, from send, and returns
// the addresses of the Redirect each got (nil: none). The last one must
// be answered (a live peer the server will introduce): the server handles
// one source's datagrams in order, so once that answer is in, every
// earlier lookup has been handled (and counted) and its answer, if any,
// has come. No waiting for silence.
func lookups(t testing.TB, send func([]byte), redirects <-chan wire.Redirect, ids ...[32]byte) [][]wire.Address {
	t.Helper()
	out := make([][]wire.Address, len(ids))
	tags := map[string]int{}
	for i, id := range ids {
		tag := append(append([]byte(nil), lookupTagPrefix...), byte(i>>8), byte(i), 0, 0)
		tags[string(tag)] = i
		send(lookupPacket(id, tag))
	}
	deadline := time.After(10 * time.Second)
	for out[len(ids)-1] == nil {
		select {
		case rd := <-redirects:
			if i, ok := tags[string(rd.Tag)]; ok && out[i] == nil {
				out[i] = rd.Addresses
			}
		case <-deadline:
			t.Fatalf("no answer to the lookup of %x, a live peer", ids[len(ids)-1][:4])
		}
	}
	return out
}

// lookups looks peers up from c's own address (see lookups).
func (c *groupClient) lookups(server netip.AddrPort, ids ...[32]byte) [][]wire.Address {
	c.t.Helper()
	return lookups(c.t, func(pkt []byte) { c.conn.WriteTo(pkt, net.UDPAddrFromAddrPort(server)) }, c.conn.redirects, ids...)
}

// anonymousLookups looks peers up from a socket with no session (see
// lookups).
func anonymousLookups(t testing.TB, server netip.AddrPort, ids ...[32]byte) [][]wire.Address {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tc := newTapConn(conn)
	defer tc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := tc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return lookups(t, func(pkt []byte) { conn.WriteToUDPAddrPort(pkt, server) }, tc.redirects, ids...)
}

// isGone reports whether a Redirect's addresses are the "peer gone"
// answer: one unspecified address of unknown origin.
func isGone(addrs []wire.Address) bool {
	return len(addrs) == 1 && addrs[0].AddrPort == netip.AddrPortFrom(netip.IPv4Unspecified(), 0) && addrs[0].Origin == wire.OriginUnknown
}
