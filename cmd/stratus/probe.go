package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// runProbe connects to an RTMFP server. By default it runs a NetConnection
// connect the way Flash does (handshake, connect, setPeerInfo) and reports
// the server's answer; with --echo N it opens a raw flow instead and
// waits for N messages to come back on a return flow (for echo servers
// such as rtmfp-cpp's echoserver).
func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	echo := fs.Int("echo", 0, "instead of connect, send N messages on a raw flow and wait for them to be echoed")
	size := fs.Int("size", 1000, "echo message size in bytes")
	metadata := fs.String("metadata", "stratus-probe", "echo flow metadata")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	peer := fs.String("fingerprint", "", "with --echo: add this peer ID (64 hex digits) to the EPD, asking a rendezvous server to introduce us to that peer")
	policy := policyFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: stratus probe [flags] rtmfp://host[:port]/DEVELOPER_KEY")
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
	if *echo == 0 {
		return probeConnect(uri, *timeout, policy)
	}
	addrs, _, err := rtmfp.ParseURL(uri)
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
		fp, err := rtmfp.ParsePeerID(*peer)
		if err != nil {
			return err
		}
		epd = append(epd, handshake.FingerprintEPD(fp)...)
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
	if err := probeEcho(ctx, s, *metadata, *echo, *size); err != nil {
		return err
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

// probeConnect runs a Flash-like NetConnection connect and reports it.
func probeConnect(uri string, timeout time.Duration, pol policyOpts) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, uri, &rtmfp.Config{ConnectTimeout: timeout, RequireHMAC: pol.requireHMAC(), RequireSequenceNumbers: pol.requireSeq()})
	if err != nil {
		return err
	}
	defer nc.Close()
	fmt.Printf("%s in %v\n", rtmfp.ConnectSuccess, time.Since(start).Round(time.Microsecond))
	fmt.Printf("server    %s\n", nc.ServerAddr())
	fmt.Printf("nearID    %s\n", nc.NearID())
	fmt.Printf("farID     %s\n", nc.FarID())
	// The server answers setPeerInfo with its keepalive periods.
	kctx, kcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer kcancel()
	srvKA, peerKA, err := nc.Keepalive(kctx)
	if err != nil {
		fmt.Println("keepalive: the server sent no set-keepalive")
		return nil
	}
	fmt.Printf("keepalive server %v, peer %v (set-keepalive 0x29)\n", srvKA, peerKA)
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
