package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// HoldResult is what Hold measured.
type HoldResult struct {
	Sessions, Failures int
	Opened             time.Duration // time to open them all
	Held               time.Duration // how long they were held
	Lost               int           // sessions the server closed during the hold
}

// holdKeepalive is how often a held session pings the server: more often
// than any server's silence limit (Stratus reaps after 4 × its 15 s
// client keepalive by default).
const holdKeepalive = 10 * time.Second

// Hold opens n sessions to the server (any RTMFP server: it needs only the
// handshake and a NetConnection connect), each from its own UDP socket,
// and holds them: held sessions answer the server's pings, acknowledge
// what it sends and ping it every 10 s. Once all are up it calls up, then
// holds them for d (or until ctx ends) and closes them. The client side
// costs one socket and about a kilobyte per session, and a few goroutines
// in all on Linux (one epoll set per core), so that 100,000 sessions fit
// in one process; the open-file limit is raised to match where allowed.
func Hold(ctx context.Context, t *Target, n, concurrency int, d time.Duration, up func(HoldResult)) (HoldResult, error) {
	if n <= 0 || concurrency <= 0 {
		return HoldResult{}, errors.New("bench hold: --sessions and --concurrency must be positive")
	}
	if err := raiseFileLimit(uint64(n) + 1024); err != nil {
		return HoldResult{}, fmt.Errorf("bench hold: %d sessions need as many open files: %w", n, err)
	}
	h, err := newHolder()
	if err != nil {
		return HoldResult{}, err
	}
	defer h.stop()
	loopback := t.Server.Addr().Is4() && t.Server.Addr().IsLoopback()
	var fails atomic.Int64
	start := time.Now()
	var firstErr error
	var errOnce sync.Once
	// A session that fails is counted and the others go on: against a
	// loaded server some connects time out.
	_ = sessionsFrom(ctx, n, concurrency, loopback, func(_ int64, conn *net.UDPConn) error {
		kp, err := handshake.GenerateKeyBits(handshake.Group2, 96, nil)
		if err != nil {
			conn.Close()
			return err
		}
		id, _ := handshake.IdentityFromKey(kp)
		s, code, err := newClient(conn, t.Server, id).connect(t.URL, t.App, time.Now().Add(30*time.Second))
		if err == nil && code != "NetConnection.Connect.Success" {
			err = fmt.Errorf("connect answered %s", code)
		}
		if err == nil {
			err = h.add(conn, s)
		}
		if err != nil {
			conn.Close()
			fails.Add(1)
			errOnce.Do(func() { firstErr = err })
		}
		return nil
	})
	r := HoldResult{Sessions: h.count(), Failures: int(fails.Load()), Opened: time.Since(start)}
	if r.Sessions == 0 {
		if firstErr == nil {
			firstErr = ctx.Err()
		}
		return r, firstErr
	}
	if up != nil {
		up(r)
	}
	held := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	r.Held = time.Since(held)
	r.Lost = h.closeAll()
	return r, nil
}

// heldSession is one session being held.
type heldSession struct {
	mu       sync.Mutex
	s        *session
	nextPing time.Time
	lost     bool // the server closed it
	buf      []byte
}

func newHeld(s *session, now time.Time) *heldSession {
	return &heldSession{s: s, nextPing: now.Add(rand.N(holdKeepalive))}
}

// handle processes one datagram from the server and returns the reply to
// send, if any (it answers pings, acknowledges data and close requests).
func (h *heldSession) handle(d []byte) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.release()
	if sid, err := wire.SessionID(d); err != nil || sid != h.s.nearSID || h.lost {
		return nil
	}
	pt, err := h.s.opener.Open(d)
	if err != nil {
		return nil
	}
	_, n, err := wire.ParseHeader(pt)
	if err != nil {
		return nil
	}
	reply := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(time.Now().UnixMilli() / 4)})
	hdr := len(reply)
	acked := false
	var prev wire.UserData
	for b := pt[n:]; ; {
		ch, rest, ok := wire.NextChunk(b)
		if !ok {
			break
		}
		b = rest
		switch ch.Type {
		case wire.ChunkPing:
			if len(ch.Payload) <= 256 {
				reply = wire.AppendChunk(reply, wire.ChunkPingReply, ch.Payload)
			}
		case wire.ChunkUserData, wire.ChunkNextUserData:
			if _, ok := h.s.userData(ch, &prev); ok {
				acked = true
			}
		case wire.ChunkBufferProbe:
			acked = true
		case wire.ChunkCloseRequest:
			reply = wire.AppendChunk(reply, wire.ChunkCloseAck, nil)
			h.lost = true
		case wire.ChunkCloseAck:
			h.lost = true
		}
	}
	if acked {
		for _, a := range h.s.acks {
			reply = wire.Ack{FlowID: a.flow, Window: 127, Cum: a.cum}.Append(reply, 100)
		}
	}
	if len(reply) == hdr {
		return nil
	}
	h.buf = h.s.sealer.Seal(h.buf[:0], h.s.farSID, reply)
	return h.buf
}

// ping returns a keepalive to send now, or nil if none is due.
func (h *heldSession) ping(now time.Time) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost || now.Before(h.nextPing) {
		return nil
	}
	h.nextPing = now.Add(holdKeepalive)
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(now.UnixMilli() / 4)})
	pkt = wire.AppendChunk(pkt, wire.ChunkPing, nil)
	h.buf = h.s.sealer.Seal(h.buf[:0], h.s.farSID, pkt)
	h.release()
	return h.buf
}

// bye returns the packet that ends the session at once (a close
// acknowledgement), or nil if the server already closed it.
func (h *heldSession) bye() ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return nil, true
	}
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator})
	pkt = wire.AppendChunk(pkt, wire.ChunkCloseAck, nil)
	return h.s.sealer.Seal(nil, h.s.farSID, pkt), false
}

// release drops the cipher state between packets: a held session then
// costs the load generator its keys only.
func (h *heldSession) release() {
	h.s.sealer.Release()
	h.s.opener.Release()
	if cap(h.buf) > 256 {
		h.buf = nil
	}
}
