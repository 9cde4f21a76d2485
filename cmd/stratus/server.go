package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// runServer runs the engine's echo responder: it accepts any session and
// echoes every message of every flow back on a return flow whose metadata
// is the original metadata followed by " return" (what rtmfp-cpp's
// echoserver does, so either can test the other). The rendezvous service
// replaces it.
func runServer(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var listen listFlag
	fs.Var(&listen, "listen", "UDP address to listen on, repeatable (default 0.0.0.0:1935 and [::]:1935)")
	policy := policyFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*level, *format)
	if err != nil {
		return err
	}
	if len(listen) == 0 {
		listen = listFlag{"0.0.0.0:1935", "[::]:1935"}
	}
	id, err := handshake.NewServerIdentity(nil)
	if err != nil {
		return err
	}
	log.Info("stratus echo responder", "fingerprint", hex.EncodeToString(id.PeerID[:]))
	var engines []*engine.Engine
	for _, addr := range listen {
		network := "udp4"
		if ua, err := net.ResolveUDPAddr("udp", addr); err == nil && ua.IP != nil && ua.IP.To4() == nil {
			network = "udp6"
		}
		conn, err := net.ListenPacket(network, addr)
		if err != nil {
			if len(listen) > 1 && network == "udp6" {
				log.Warn("IPv6 listener unavailable", "addr", addr, "err", err)
				continue
			}
			return err
		}
		e, err := engine.New(conn, engine.Config{Identity: id, Policy: policy.get(), Logger: log, Keepalive: 15e9})
		if err != nil {
			return err
		}
		engines = append(engines, e)
		log.Info("listening", "udp", conn.LocalAddr().String())
		go echoSessions(e, log)
	}
	if len(engines) == 0 {
		return errors.New("no listener")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	for _, e := range engines {
		e.Close()
	}
	return nil
}

func echoSessions(e *engine.Engine, log *slog.Logger) {
	for {
		s, err := e.Accept(context.Background())
		if err != nil {
			return
		}
		id := s.PeerID()
		log.Info("session", "peer", hex.EncodeToString(id[:]), "addr", s.RemoteAddr().String())
		go func() {
			for {
				rf, err := s.AcceptFlow(context.Background())
				if err != nil {
					log.Info("session closed", "peer", hex.EncodeToString(id[:]), "reason", err)
					return
				}
				go echoFlow(rf, log)
			}
		}()
	}
}

func echoFlow(rf *engine.RecvFlow, log *slog.Logger) {
	ctx := context.Background()
	back, err := rf.Session().OpenFlow(append(append([]byte(nil), rf.Metadata()...), " return"...), rf)
	if err != nil {
		return
	}
	n, echoing := 0, true
	for {
		m, err := rf.Read(ctx)
		if err != nil {
			break
		}
		n++
		// A peer that refuses the return flow still gets its messages
		// read (and so acknowledged); they are just not echoed.
		if echoing && back.Write(m) != nil {
			echoing = false
		}
	}
	back.Close()
	log.Debug("flow done", "metadata", fmt.Sprintf("%q", rf.Metadata()), "messages", n)
}

// policy flags shared by server and probe.
type policyOpts struct{ hmac, seq *string }

func policyFlags(fs *flag.FlagSet) policyOpts {
	return policyOpts{
		hmac: fs.String("hmac", "offer", "packet HMAC (RFC 7425): offer (send on request, what Flash does) or require"),
		seq:  fs.String("seq", "offer", "session sequence numbers (RFC 7425): offer or require"),
	}
}

func (p policyOpts) get() handshake.Policy {
	var pol handshake.Policy
	if *p.hmac == "require" {
		pol.HMACSendAlways, pol.HMACRecvRequired = true, true
	}
	if *p.seq == "require" {
		pol.SeqSendAlways, pol.SeqRecvRequired = true, true
	}
	return pol
}
