package engine

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
)

// slowEvents is an Events whose Message callback stalls on gate until the
// test opens it, as a server busy with something else would.
type slowEvents struct {
	gate    chan struct{}
	stalled chan struct{} // closed when the first message arrives
	once    sync.Once
	mu      sync.Mutex
	got     [][]byte
	closed  chan struct{} // closed at FlowClosed
}

func (h *slowEvents) SessionOpened(*Session) {}
func (h *slowEvents) FlowOpened(*RecvFlow)   {}
func (h *slowEvents) Message(_ *RecvFlow, msg []byte) {
	h.once.Do(func() { close(h.stalled) })
	<-h.gate
	h.mu.Lock()
	h.got = append(h.got, msg)
	h.mu.Unlock()
}
func (h *slowEvents) FlowClosed(*RecvFlow)                    { close(h.closed) }
func (h *slowEvents) SessionClosed(*Session, error)           {}
func (h *slowEvents) AddressChanged(*Session, netip.AddrPort) {}

// A dispatcher that falls behind must not let the engine queue messages
// without bound: past MaxEventBytes they stay in their sessions, flow
// control holds the sender back, and nothing is lost or reordered once the
// dispatcher catches up.
func TestEventQueueIsBounded(t *testing.T) {
	defer goleak.VerifyNone(t)
	sc, cc := loopbackUDP(t), loopbackUDP(t)
	h := &slowEvents{gate: make(chan struct{}), stalled: make(chan struct{}), closed: make(chan struct{})}
	const bound = 64 << 10
	server := serverEngine(t, sc, Config{Events: h, MaxEventBytes: bound})
	client := clientEngine(t, cc, Config{})
	defer server.Close()
	defer client.Close()
	release := sync.OnceFunc(func() { close(h.gate) })
	defer release() // before the engines close: a failed check must not leave the dispatcher stuck

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := sc.LocalAddr().(*net.UDPAddr).AddrPort()
	sess, err := client.Connect(ctx, handshake.AncillaryEPD("rtmfp://"+addr.String()+"/app"), ConnectOptions{}, addr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sess.OpenFlow([]byte("TEST-FLOW"), nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs := makeMessages(4<<20, 11)
	largest := 0
	for _, m := range msgs {
		largest = max(largest, len(m))
	}
	wrote := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if _, err := f.WriteMessage(ctx, m, time.Time{}); err != nil {
				wrote <- err
				return
			}
		}
		f.Close()
		wrote <- f.WaitComplete(ctx)
	}()

	select {
	case <-h.stalled:
	case <-ctx.Done():
		t.Fatal("no message reached the dispatcher")
	}
	// While the dispatcher is stuck, watch the queue for a while: the
	// reader keeps taking packets, but what waits for the dispatcher stays
	// within the bound (plus the one message that crossed it).
	peak := 0
	for range 50 {
		peak = max(peak, server.queuedEventBytes())
		time.Sleep(10 * time.Millisecond)
	}
	if limit := bound + largest + eventCharge; peak > limit {
		t.Fatalf("event queue reached %d bytes, bound %d", peak, limit)
	}
	select {
	case err := <-wrote:
		t.Fatalf("the sender finished (%v) although the receiver could not have taken 4 MiB", err)
	default:
	}
	t.Logf("queue peak %d bytes while stalled; %d messages, %d bytes sent", peak, len(msgs), 4<<20)

	release()
	if err := <-wrote; err != nil {
		t.Fatal("writer:", err)
	}
	select {
	case <-h.closed:
	case <-ctx.Done():
		t.Fatal("flow end never reached the dispatcher")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) != len(msgs) {
		t.Fatalf("got %d of %d messages", len(h.got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(h.got[i], msgs[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

// answerEvents answers every message with two, on a return flow, from
// the callback (as the server answers connect with _result and the
// keepalive setting).
type answerEvents struct{ echoEvents }

func (h *answerEvents) Message(f *RecvFlow, msg []byte) {
	out, _ := f.Session().OpenFlow([]byte("answers"), f)
	out.TryWrite([]byte("first answer"))
	out.TryWrite([]byte("second answer"))
}

// answeringServer starts a server engine whose callbacks answer every
// message with two (answerEvents) and a client session to it, on an
// in-memory network; both engines close when the test ends.
func answeringServer(t *testing.T, seed uint64) (*Engine, *Session) {
	n := testutil.NewNetwork(seed)
	sc, cc := n.Listen("10.0.0.1:1935"), n.Listen("10.0.0.2:5000")
	server := serverEngine(t, sc, Config{Events: &answerEvents{}})
	client := clientEngine(t, cc, Config{})
	t.Cleanup(func() { client.Close(); server.Close() })
	sess, err := client.Connect(context.Background(), handshake.AncillaryEPD("rtmfp://s/app"), ConnectOptions{}, sc.AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	return server, sess
}

// What the callbacks write during the reader's iteration is packed at its
// end, together with the acknowledgement of the datagrams that caused it:
// every write used to pack a packet of its own at once (a tcconn connect
// took 20 datagrams; 16 since), and the batch's messages were handed to
// the callbacks only in the next iteration, after the acknowledgement had
// gone alone.
func TestCallbackWritesShareAPacket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		server, sess := answeringServer(t, 13)
		ctx := context.Background()
		f, _ := sess.OpenFlow([]byte("requests"), nil)
		synctest.Wait()
		before, wakeups := server.Stats().PacketsOut, server.Stats().Wakeups
		if err := f.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		rf, err := sess.AcceptFlow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"first answer", "second answer"} {
			if m, err := rf.Read(ctx); err != nil || string(m) != want {
				t.Fatalf("read %q, %v; want %q", m, err, want)
			}
		}
		synctest.Wait()
		// One packet: the acknowledgement of the request and both
		// answers (three before: a packet per write; then two: the
		// acknowledgement went before the callback ran).
		if got := server.Stats().PacketsOut - before; got != 1 {
			t.Fatalf("the server sent %d datagrams for the acknowledgement and two answers, want 1", got)
		}
		// The server's reader woke for the request and for the
		// acknowledgement of the answers (once more before: the callback
		// ran in an iteration of its own).
		if got := server.Stats().Wakeups - wakeups; got != 2 {
			t.Fatalf("the server's reader woke %d times for the request and the acknowledgement of its answers, want 2", got)
		}
	})
}

// The reader sleeps until a timer that has something to do: a session's
// superseded entries, and one whose deadline moved later since it was
// queued (its answer acknowledged, its acknowledgement sent with data),
// used to wake it for nothing; on a lightly loaded server a wake-up costs
// more than the protocol work of a datagram.
func TestStaleTimersDoNotWakeTheReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		server, sess := answeringServer(t, 14)
		ctx := context.Background()
		f, _ := sess.OpenFlow([]byte("requests"), nil)
		for i := range 5 {
			if err := f.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if _, err := sess.AcceptFlow(ctx); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		// Idle for 10 s, one wake-up is due: the session lets its cipher
		// state go after 2 s (four before: three for timers that had
		// nothing left to do).
		st := server.Stats()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		idle := server.Stats()
		if in := idle.PacketsIn - st.PacketsIn; in != 0 {
			t.Fatalf("%d datagrams came in while idle", in)
		}
		if w := idle.Wakeups - st.Wakeups; w != 1 {
			t.Errorf("the idle server's reader woke %d times in 10 s, want 1", w)
		}
		// Closed by the client, the session lingers 19 s to answer a
		// repeated close, then is gone with its timers.
		if err := sess.Close(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		st = server.Stats()
		time.Sleep(60 * time.Second)
		synctest.Wait()
		idle = server.Stats()
		if in := idle.PacketsIn - st.PacketsIn; in != 0 {
			t.Fatalf("%d datagrams came in after the close", in)
		}
		if w := idle.Wakeups - st.Wakeups; w != 1 {
			t.Errorf("the server's reader woke %d times in the minute after the close, want 1", w)
		}
	})
}
