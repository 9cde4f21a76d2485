//go:build linux

// Command wakecost measures what one wake-up of a sleeping Go UDP server
// costs on this machine: a UDP echo server (a child process) answers
// requests sent one at a time with a gap between them, so that it sleeps
// before each, and the server's CPU time per request (utime+stime from
// /proc) is printed for each way of waiting:
//
//	poller   net.UDPConn, as any Go server (the runtime's epoll poller)
//	syscall  a blocking recvfrom through syscall.Syscall6 (releases the P)
//	raw      a blocking ppoll through syscall.RawSyscall6 on a locked
//	         thread (keeps the P)
//
// It explains the CPU per connect of README "Performance": a connect from
// a client that connects alone costs a wake-up per datagram batch.
//
//	go run ./bench/wakecost [-n 2000] [-gap 3ms]
//
// Linux only.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	serve := flag.String("serve", "", "run the echo server this way (internal)")
	n := flag.Int("n", 2000, "requests per way of waiting")
	gap := flag.Duration("gap", 3*time.Millisecond, "mean pause between requests (drawn from gap/2 to 3gap/2)")
	flag.Parse()
	if *serve != "" {
		fmt.Fprintln(os.Stderr, "wakecost:", echo(*serve)) // it returns only on an error
		os.Exit(1)
	}
	for _, mode := range []string{"poller", "syscall", "raw"} {
		us, err := measure(mode, *n, *gap)
		if err != nil {
			fmt.Fprintln(os.Stderr, "wakecost:", mode+":", err)
			os.Exit(1)
		}
		fmt.Printf("%-8s %6.1f µs of server CPU per request (%d requests, %v apart)\n", mode, us, *n, *gap)
	}
}

// measure starts an echo server, sends it n requests and returns its CPU
// time per request in microseconds.
func measure(mode string, n int, gap time.Duration) (float64, error) {
	cmd := exec.Command(os.Args[0], "-serve", mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n') // the server's port
	if err != nil {
		return 0, fmt.Errorf("no port from the server: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, err
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	req, resp := make([]byte, 100), make([]byte, 200)
	exchange := func() error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(resp)
		return err
	}
	for range 20 { // warm up
		if err := exchange(); err != nil {
			return 0, err
		}
	}
	before, err := cpuTicks(cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	for range n {
		// A random pause: a fixed one can fall into step with the kernel's
		// tick, which charges CPU time to whoever runs when it fires.
		time.Sleep(gap/2 + rand.N(gap))
		if err := exchange(); err != nil {
			return 0, err
		}
	}
	after, err := cpuTicks(cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return float64(after-before) * 1e6 / ticksPerSecond / float64(n), nil
}

// cpuTicks is a process's utime+stime in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from the third on
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cannot read %q", s)
	}
	return u + k, nil
}

// echo answers every datagram with itself, waiting the way mode says,
// until an error.
func echo(mode string) error {
	if mode == "poller" {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		fmt.Println(c.LocalAddr().(*net.UDPAddr).Port)
		b := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(b)
			if err != nil {
				return err
			}
			c.WriteToUDPAddrPort(b[:n], from)
		}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return err
	}
	fmt.Println(sa.(*syscall.SockaddrInet4).Port)
	if mode == "raw" {
		// On its own thread: otherwise the goroutine moves between
		// threads after each preemption (about 95 µs per request then).
		runtime.LockOSThread()
	}
	b := make([]byte, 2048)
	var from syscall.RawSockaddrInet6 // large enough for either family
	for {
		if mode == "raw" {
			// ppoll, unlike recvfrom, returns EINTR when the runtime's
			// preemption signal arrives, so the goroutine can be stopped.
			pfd := struct {
				fd             int32
				events, revent int16
			}{int32(fd), 1 /* POLLIN */, 0}
			syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, 0, 0, 0, 0)
		}
		fl := uint32(unsafe.Sizeof(from))
		var r uintptr
		var e syscall.Errno
		if mode == "raw" {
			r, _, e = syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fl)))
		} else {
			r, _, e = syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fl)))
		}
		if e != 0 {
			continue // EAGAIN after a signal, EINTR
		}
		syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), r, 0, uintptr(unsafe.Pointer(&from)), uintptr(fl))
	}
}
