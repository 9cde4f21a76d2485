package bench

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// holder keeps held sessions' sockets in epoll sets, one per core, each
// served by one goroutine: no goroutine or Go poller entry per session.
type holder struct {
	sets []*epollSet
	rr   atomic.Uint32
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

type epollSet struct {
	epfd int
	mu   sync.Mutex
	held []*heldFD // index = the epoll event's data
}

type heldFD struct {
	*heldSession
	fd int
	sa syscall.Sockaddr
}

func newHolder() (*holder, error) {
	h := &holder{done: make(chan struct{})}
	for range runtime.GOMAXPROCS(0) {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			h.stop()
			return nil, err
		}
		set := &epollSet{epfd: fd}
		h.sets = append(h.sets, set)
		h.wg.Add(1)
		go h.loop(set)
	}
	return h, nil
}

// add takes over a connected session's socket.
func (h *holder) add(conn *net.UDPConn, s *session) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return err
	}
	conn.Close() // the duplicate keeps the socket (non-blocking, as Go made it)
	if derr != nil {
		return derr
	}
	syscall.CloseOnExec(fd)
	a := s.server.Addr()
	if !a.Is4() {
		syscall.Close(fd)
		return errors.New("bench hold: IPv4 servers only")
	}
	set := h.sets[int(h.rr.Add(1))%len(h.sets)]
	set.mu.Lock()
	idx := len(set.held)
	set.held = append(set.held, &heldFD{heldSession: newHeld(s, time.Now()), fd: fd, sa: &syscall.SockaddrInet4{Port: int(s.server.Port()), Addr: a.As4()}})
	set.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(idx)}
	return syscall.EpollCtl(set.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (h *holder) loop(set *epollSet) {
	defer h.wg.Done()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 8192)
	lastScan := time.Now()
	for {
		select {
		case <-h.done:
			return
		default:
		}
		n, err := syscall.EpollWait(set.epfd, events, 200)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			set.mu.Lock()
			hf := set.held[ev.Fd]
			set.mu.Unlock()
			for {
				m, _, err := syscall.Recvfrom(hf.fd, buf, syscall.MSG_DONTWAIT)
				if err != nil {
					break
				}
				if r := hf.handle(buf[:m]); r != nil {
					_ = syscall.Sendto(hf.fd, r, 0, hf.sa)
				}
			}
		}
		if now := time.Now(); now.Sub(lastScan) >= time.Second {
			lastScan = now
			set.mu.Lock()
			all := set.held
			set.mu.Unlock()
			for _, hf := range all {
				if p := hf.ping(now); p != nil {
					_ = syscall.Sendto(hf.fd, p, 0, hf.sa)
				}
			}
		}
	}
}

func (h *holder) count() int {
	n := 0
	for _, set := range h.sets {
		set.mu.Lock()
		n += len(set.held)
		set.mu.Unlock()
	}
	return n
}

// closeAll ends every held session and reports how many the server had
// closed already.
func (h *holder) closeAll() int {
	h.halt() // the loops' sockaddrs are theirs while they run
	lost := 0
	for _, set := range h.sets {
		set.mu.Lock()
		all := set.held
		set.mu.Unlock()
		for _, hf := range all {
			if p, gone := hf.bye(); gone {
				lost++
			} else {
				_ = syscall.Sendto(hf.fd, p, 0, hf.sa)
			}
		}
	}
	return lost
}

// halt stops the loops.
func (h *holder) halt() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

func (h *holder) stop() {
	h.halt()
	for _, set := range h.sets {
		for _, hf := range set.held {
			syscall.Close(hf.fd)
		}
		set.held = nil
		syscall.Close(set.epfd)
	}
}

// raiseFileLimit lifts the open-file limit to n where the process may.
func raiseFileLimit(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= n {
		return nil
	}
	l.Cur = n
	if l.Max < n {
		l.Max = n // only a privileged process may
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
