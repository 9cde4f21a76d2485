package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSocket is the Linux fast path for a UDP socket: datagrams are read
// and written in batches (recvmmsg, sendmmsg) by raw system calls made
// from inside the Go poller's readiness callbacks. Raw calls do not go
// through the scheduler's system-call hand-off, so a packet costs no
// thread wake-ups beyond the poller's own (on a lightly loaded server
// that hand-off, and the runtime monitor it wakes, cost more than the
// protocol work).
type rawSocket struct {
	conn     *net.UDPConn
	rc       syscall.RawConn
	v6       bool // an AF_INET6 socket: IPv4 peers are written as mapped addresses
	woken    atomic.Bool
	deadline time.Time // the read deadline set; reset after a wake, which moves it

	recvFn, sendFn func(fd uintptr) bool // s.recv and s.send
	pollFn         func(fd uintptr)      // s.poll
	rn             int                   // recv's result
	rerr           syscall.Errno
	wk             int // send's headers
	wr             uintptr
	werr           syscall.Errno

	rhdr  [batchSize]mmsghdr
	riov  [batchSize]unix.Iovec
	rname [batchSize]unix.RawSockaddrInet6 // large enough for either family

	whdr  [batchSize]mmsghdr
	wiov  [batchSize]unix.Iovec
	wname [batchSize]unix.RawSockaddrInet6
}

// mmsghdr is struct mmsghdr (Go pads it to the C layout).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// newUDPSocket returns the fast path for an unconnected UDP socket, or
// the portable one.
func newUDPSocket(conn *net.UDPConn, warn func(error, int)) socket {
	if conn.RemoteAddr() != nil {
		return newConnSocket(conn, warn)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return newConnSocket(conn, warn)
	}
	fam := 0
	if err := rc.Control(func(fd uintptr) { fam, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		return newConnSocket(conn, warn)
	}
	s := &rawSocket{conn: conn, rc: rc, v6: fam == unix.AF_INET6}
	s.recvFn, s.sendFn, s.pollFn = s.recv, s.send, s.poll
	return s
}

func (s *rawSocket) read(in *inBatch, deadline time.Time) (int, error) {
	poll := deadline.Equal(pollNow)
	if !poll && !deadline.Equal(s.deadline) {
		if err := s.conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		s.deadline = deadline
	}
	if s.woken.Swap(false) {
		s.deadline = time.Unix(1, 0) // wake moved it: set it again next time
		return 0, nil
	}
	for i := range batchSize {
		s.riov[i] = unix.Iovec{Base: &in.buf[i][0]}
		s.riov[i].SetLen(len(in.buf[i]))
		h := &s.rhdr[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&s.rname[i])), Namelen: uint32(unsafe.Sizeof(s.rname[i])), Iov: &s.riov[i]}
		h.SetIovlen(1)
	}
	// Always try the socket before waiting (recvFn does): RawConn.Read
	// forgets a readiness the poller recorded before the call (it resets
	// the poll descriptor first), so a datagram that arrived after the last
	// read would otherwise wait for the next one, or for the deadline.
	var err error
	if poll {
		// One try, and the deadline left alone: moving it to the past and
		// back costs the runtime's poller a timer change, which can wake
		// another thread.
		s.rn, s.rerr = 0, 0
		err = s.rc.Control(s.pollFn)
	} else {
		err = s.rc.Read(s.recvFn)
	}
	n, errno := s.rn, s.rerr
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.deadline = time.Unix(1, 0) // a wake may have moved it
			return 0, nil
		}
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	for i := range n {
		in.n[i] = int(s.rhdr[i].n)
		in.src[i] = sockaddrAddrPort(&s.rname[i])
	}
	return n, nil
}

func sockaddrAddrPort(rsa *unix.RawSockaddrInet6) netip.AddrPort {
	switch rsa.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// putSockaddr writes a destination in the socket's family; false if the
// socket cannot reach it (an IPv6 peer on an IPv4 socket).
func (s *rawSocket) putSockaddr(rsa *unix.RawSockaddrInet6, a netip.AddrPort) (uint32, bool) {
	if s.v6 {
		*rsa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.Addr().As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:], a.Port())
		return unix.SizeofSockaddrInet6, true
	}
	if !a.Addr().Unmap().Is4() {
		return 0, false
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
	*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().Unmap().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], a.Port())
	return unix.SizeofSockaddrInet4, true
}

func (s *rawSocket) wake() {
	s.woken.Store(true)
	s.conn.SetReadDeadline(time.Unix(1, 0)) // makes a blocked read return
}

func (s *rawSocket) write(out *outBatch) int {
	sent := 0
	for i := 0; i < out.len(); {
		// Fill a sendmmsg call with what is left, up to batchSize.
		k := 0
		for ; k < batchSize && i+k < out.len(); k++ {
			d := out.datagram(i + k)
			nl, ok := s.putSockaddr(&s.wname[k], out.dst[i+k])
			if !ok || len(d) == 0 {
				break
			}
			s.wiov[k] = unix.Iovec{Base: &d[0]}
			s.wiov[k].SetLen(len(d))
			h := &s.whdr[k].hdr
			*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&s.wname[k])), Namelen: nl, Iov: &s.wiov[k]}
			h.SetIovlen(1)
		}
		if k == 0 {
			i++ // a datagram this socket cannot send: dropped
			continue
		}
		s.wk = k
		err := s.rc.Write(s.sendFn)
		r, errno := s.wr, s.werr
		if err != nil {
			return sent
		}
		if errno != 0 || r == 0 {
			i++ // the first datagram failed (no route, full buffer): drop it and go on
			continue
		}
		sent += int(r)
		i += int(r)
	}
	return sent
}

// recv is the read's system call (recvFn: a method value made once, since
// a closure handed to RawConn.Read escapes, an allocation per read).
func (s *rawSocket) recv(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.rhdr[0])), batchSize, 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	s.rn, s.rerr = int(r), e
	return true
}

// poll is recv without waiting (pollFn).
func (s *rawSocket) poll(fd uintptr) { s.recv(fd) }

// send is the write's system call for the first s.wk headers (sendFn, as
// recvFn).
func (s *rawSocket) send(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.whdr[0])), uintptr(s.wk), 0, 0, 0)
		if e != unix.EINTR {
			s.wr, s.werr = r, e
			return true // never wait for room: a full buffer drops, as a router would
		}
	}
}

func (s *rawSocket) close() error        { return s.conn.Close() }
func (s *rawSocket) localAddr() net.Addr { return s.conn.LocalAddr() }

// openShardConns opens n-1 more sockets on conn's address with
// SO_REUSEPORT, so that the kernel spreads datagrams over n sockets
// (shards), and attaches a classic BPF program that steers every session
// packet to the socket of the shard that owns its session ID (session ID
// modulo n: see shard.newSID); startup packets (session ID 0) are spread
// by the kernel's hash of the 4-tuple. The result starts with conn itself.
// With the steering in place a session's packets reach its shard whatever
// address they come from (mobility, NAT rebinding); without it (an old
// kernel) they are forwarded between shards.
func openShardConns(conn *net.UDPConn, n int) (conns []*net.UDPConn, steered bool, err error) {
	conns = []*net.UDPConn{conn}
	if n <= 1 || conn.RemoteAddr() != nil {
		return conns, false, nil
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return conns, false, err
	}
	var v6only, rcvbuf, sndbuf, fam int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		f := int(fd)
		if serr = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			return
		}
		fam, _ = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if fam == unix.AF_INET6 {
			v6only, _ = unix.GetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		}
		rcvbuf, _ = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUF)
		sndbuf, _ = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		return conns, false, err
	}
	if serr != nil {
		return conns, false, fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	laddr := conn.LocalAddr().(*net.UDPAddr)
	network := "udp4"
	if fam == unix.AF_INET6 {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			f := int(fd)
			if err = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return
			}
			if fam == unix.AF_INET6 {
				err = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
			}
			// The kernel reports twice what was asked for.
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf/2)
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf/2)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	for range n - 1 {
		pc, err := lc.ListenPacket(context.Background(), network, laddr.String())
		if err != nil {
			for _, c := range conns[1:] {
				c.Close()
			}
			return conns[:1], false, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	if noSteering {
		return conns, false, nil
	}
	prog := steeringProgram(uint32(n))
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err == nil && serr == nil {
		steered = true
	}
	return conns, steered, nil
}

// noSteering leaves session packets to the kernel's hash (tests of the
// forwarding between shards).
var noSteering bool

// steeringProgram is the classic BPF program that picks a reuseport
// socket for a datagram (its UDP payload at offset 0): the session ID is
// the XOR of the first three 32-bit words (RFC 7016 §2.2.2); a non-zero
// one goes to socket ID mod n, a zero one (startup packets) to an index
// out of range, which makes the kernel fall back to its 4-tuple hash. A
// datagram shorter than 12 bytes ends the program with 0: socket 0, which
// drops it.
func steeringProgram(n uint32) []unix.SockFilter {
	const (
		ldAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		st     = unix.BPF_ST
		ldxMem = unix.BPF_LDX | unix.BPF_W | unix.BPF_MEM
		xorX   = unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X
		jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		modK   = unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K
		retA   = unix.BPF_RET | unix.BPF_A
		retK   = unix.BPF_RET | unix.BPF_K
	)
	return []unix.SockFilter{
		{Code: ldAbsW, K: 4},
		{Code: st, K: 0},
		{Code: ldAbsW, K: 8},
		{Code: ldxMem, K: 0},
		{Code: xorX},
		{Code: st, K: 0},
		{Code: ldAbsW, K: 0},
		{Code: ldxMem, K: 0},
		{Code: xorX},              // A = session ID
		{Code: jeqK, K: 0, Jt: 2}, // startup packet: let the kernel hash it
		{Code: modK, K: n},
		{Code: retA},
		{Code: retK, K: 0xffffffff},
	}
}
