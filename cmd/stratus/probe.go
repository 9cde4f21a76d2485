package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// runProbe connects to an RTMFP server as a Flash-like client (static
// group-2 identity, the URI as ancillary-data EPD), prints what the
// handshake established, then sends messages on a flow and waits for them
// to come back on a return flow (servers that echo, like ours and
// rtmfp-cpp's echoserver).
func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	count := fs.Int("count", 5, "messages to send (0: handshake only)")
	size := fs.Int("size", 1000, "message size in bytes")
	metadata := fs.String("metadata", "stratus-probe", "flow metadata")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	peer := fs.String("fingerprint", "", "require the server's fingerprint (64 hex digits) in the EPD")
	policy := policyFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: stratus probe [flags] rtmfp://host[:port]/app")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("one rtmfp:// URL expected")
	}
	uri := fs.Arg(0)
	addrs, err := resolveRTMFP(uri)
	if err != nil {
		return err
	}
	id, err := handshake.NewClientIdentity(nil)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	e, err := engine.New(conn, engine.Config{Identity: id, Policy: policy.get(), OpenTimeout: *timeout})
	if err != nil {
		return err
	}
	defer e.Close()
	epd := handshake.AncillaryEPD(uri)
	if *peer != "" {
		fp, err := hex.DecodeString(*peer)
		if err != nil || len(fp) != 32 {
			return errors.New("--fingerprint wants 64 hex digits")
		}
		epd = append(epd, handshake.FingerprintEPD([32]byte(fp))...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	s, err := e.Connect(ctx, epd, engine.ConnectOptions{Introducer: true}, addrs...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", uri, err)
	}
	far := s.PeerID()
	fmt.Printf("connected to %s in %v\n", s.RemoteAddr(), time.Since(start).Round(time.Microsecond))
	fmt.Printf("nearID    %s\n", hex.EncodeToString(id.PeerID[:]))
	fmt.Printf("farID     %s\n", hex.EncodeToString(far[:]))
	fmt.Printf("nearNonce %s\n", hex.EncodeToString(s.NearNonce()))
	fmt.Printf("farNonce  %s\n", hex.EncodeToString(s.FarNonce()))
	if *count > 0 {
		if err := probeEcho(ctx, s, *metadata, *count, *size); err != nil {
			return err
		}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		fmt.Println("close: no acknowledgement from the server")
	} else {
		fmt.Println("closed")
	}
	return nil
}

func probeEcho(ctx context.Context, s *engine.Session, metadata string, count, size int) error {
	f, err := s.OpenFlow([]byte(metadata), nil)
	if err != nil {
		return err
	}
	sent := make([][]byte, count)
	at := make([]time.Time, count)
	for i := range sent {
		m := bytes.Repeat([]byte{byte(i)}, size)
		copy(m, strconv.Itoa(i))
		sent[i], at[i] = m, time.Now()
		if err := f.Write(m); err != nil {
			return err
		}
	}
	rf, err := s.AcceptFlow(ctx)
	if err != nil {
		return fmt.Errorf("no return flow: %w", err)
	}
	if assoc, ok := rf.Assoc(); !ok || assoc != f.ID() {
		fmt.Printf("return flow %d (metadata %q) is not associated with our flow\n", rf.ID(), rf.Metadata())
	}
	for i := range count {
		m, err := rf.Read(ctx)
		if err != nil {
			return fmt.Errorf("echo %d: %w", i, err)
		}
		if !bytes.Equal(m, sent[i]) {
			return fmt.Errorf("echo %d differs", i)
		}
		fmt.Printf("echo %d: %d bytes, %v\n", i, len(m), time.Since(at[i]).Round(time.Microsecond))
	}
	f.Close()
	fmt.Printf("srtt %v\n", s.SRTT())
	return nil
}

// resolveRTMFP returns the UDP addresses of an rtmfp:// URL (port 1935
// unless given).
func resolveRTMFP(raw string) ([]netip.AddrPort, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "rtmfp" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q is not an rtmfp://host[:port]/... URL", raw)
	}
	port := uint16(1935)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port in %q", raw)
		}
		port = uint16(n)
	}
	ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", u.Hostname())
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return out, nil
}
