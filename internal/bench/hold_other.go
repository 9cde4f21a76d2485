//go:build !linux

package bench

import (
	"errors"
	"net"
	"sync"
	"time"
)

// holder keeps each held session's socket with a goroutine of its own
// (Linux uses epoll sets instead).
type holder struct {
	mu   sync.Mutex
	held []*heldConn
	done chan struct{}
	wg   sync.WaitGroup
}

type heldConn struct {
	*heldSession
	conn *net.UDPConn
}

func newHolder() (*holder, error) { return &holder{done: make(chan struct{})}, nil }

func (h *holder) add(conn *net.UDPConn, s *session) error {
	if !s.server.Addr().Is4() {
		return errors.New("bench hold: IPv4 servers only")
	}
	hc := &heldConn{heldSession: newHeld(s, time.Now()), conn: conn}
	h.mu.Lock()
	h.held = append(h.held, hc)
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, 8192)
		for {
			select {
			case <-h.done:
				return
			default:
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err == nil {
				if r := hc.handle(buf[:n]); r != nil {
					conn.WriteToUDPAddrPort(r, s.server)
				}
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return
			}
			if p := hc.ping(time.Now()); p != nil {
				conn.WriteToUDPAddrPort(p, s.server)
			}
		}
	}()
	return nil
}

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

func (h *holder) closeAll() int {
	h.mu.Lock()
	all := h.held
	h.mu.Unlock()
	lost := 0
	for _, hc := range all {
		if p, gone := hc.bye(); gone {
			lost++
		} else {
			hc.conn.WriteToUDPAddrPort(p, hc.s.server)
		}
	}
	return lost
}

func (h *holder) stop() {
	close(h.done)
	h.mu.Lock()
	for _, hc := range h.held {
		hc.conn.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func raiseFileLimit(uint64) error { return nil }
