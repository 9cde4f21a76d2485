// Package bench is Stratus's load generator: a minimal RTMFP client that
// keeps no state beyond what one exchange needs (no engine, no goroutines
// per session), used by "stratus bench" to measure connects per second,
// memory per idle session and introduction throughput and latency.
package bench

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// ErrTimeout is returned when the server does not answer in time.
var ErrTimeout = errors.New("bench: no answer")

const retransmit = 300 * time.Millisecond

// client runs one exchange at a time over one UDP socket.
type client struct {
	conn   *net.UDPConn
	server netip.AddrPort
	id     *handshake.Identity
	buf    []byte
	def    *wire.Opener
	seal   *wire.Sealer
}

func newClient(conn *net.UDPConn, server netip.AddrPort, id *handshake.Identity) *client {
	return &client{conn: conn, server: server, id: id, buf: make([]byte, 8192), def: wire.NewDefaultOpener(), seal: wire.NewDefaultSealer()}
}

func (c *client) sendStartup(sid uint32, to netip.AddrPort, chunk []byte) error {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup, Timestamp: uint16(time.Now().UnixMilli() / 4)})
	_, err := c.conn.WriteToUDPAddrPort(c.seal.Seal(nil, sid, append(pkt, chunk...)), to)
	return err
}

// await reads datagrams until match accepts one (returning done) or the
// deadline passes; resend is called every retransmission interval.
func (c *client) await(deadline time.Time, resend func() error, match func(sid uint32, src netip.AddrPort, d []byte) bool) error {
	next := time.Now().Add(retransmit)
	for {
		wait := min(time.Until(next), time.Until(deadline))
		if wait <= 0 {
			if time.Now().After(deadline) {
				return ErrTimeout
			}
			if err := resend(); err != nil {
				return err
			}
			next = time.Now().Add(retransmit)
			continue
		}
		c.conn.SetReadDeadline(time.Now().Add(wait))
		n, src, err := c.conn.ReadFromUDPAddrPort(c.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		sid, err := wire.SessionID(c.buf[:n])
		if err != nil {
			continue
		}
		if match(sid, src, append([]byte(nil), c.buf[:n]...)) {
			return nil
		}
	}
}

// startupChunk decrypts a default-key packet and returns its first chunk.
func (c *client) startupChunk(d []byte) (wire.Chunk, bool) {
	pt, err := c.def.Open(d)
	if err != nil {
		return wire.Chunk{}, false
	}
	_, n, err := wire.ParseHeader(pt)
	if err != nil {
		return wire.Chunk{}, false
	}
	ch, _, ok := wire.NextChunk(pt[n:])
	return ch, ok
}

// session is what remains of a connected exchange: its keys and session
// IDs, the server's address and its NetConnection flow, and what to
// acknowledge (enough to keep it alive and to close it).
type session struct {
	sealer   *wire.Sealer
	opener   *wire.Opener
	farSID   uint32         // the server's ID for the session (where we send)
	nearSID  uint32         // ours (what the server's packets carry)
	server   netip.AddrPort // where the server answers from
	ctrlFlow uint64         // the server's NetConnection flow ID
	acks     []flowAck      // per server flow: the cumulative sequence number received
}

// flowAck is what a held session acknowledges on one of the server's flows.
type flowAck struct{ flow, cum uint64 }

// ack records a received fragment and reports the cumulative ack to send
// for its flow (fragments past a gap wait for the server's retransmission
// of the missing ones: a load generator keeps no reassembly state).
func (s *session) ack(flow, seq uint64) uint64 {
	for i := range s.acks {
		if s.acks[i].flow == flow {
			if seq == s.acks[i].cum+1 {
				s.acks[i].cum = seq
			}
			return s.acks[i].cum
		}
	}
	cum := uint64(0)
	if seq == 1 {
		cum = 1
	}
	s.acks = append(s.acks, flowAck{flow, cum})
	return cum
}

func randomTag() []byte {
	t := make([]byte, 16)
	rand.Read(t)
	return t
}

// connect runs handshake and NetConnection connect; it returns the
// connect's status code.
func (c *client) connect(url, app string, deadline time.Time) (*session, string, error) {
	tag := randomTag()
	hello := wire.IHello{EPD: handshake.AncillaryEPD(url), Tag: tag}.Append(nil)
	if err := c.sendStartup(0, c.server, hello); err != nil {
		return nil, "", err
	}
	var rh wire.RHello
	var rhSrc netip.AddrPort
	err := c.await(deadline, func() error { return c.sendStartup(0, c.server, hello) }, func(sid uint32, src netip.AddrPort, d []byte) bool {
		ch, ok := c.startupChunk(d)
		if !ok || sid != 0 || ch.Type != wire.ChunkRHello {
			return false
		}
		r, err := wire.ParseRHello(ch.Payload)
		if err != nil || string(r.Tag) != string(tag) {
			return false
		}
		rh, rhSrc = r, src
		return true
	})
	if err != nil {
		return nil, "", fmt.Errorf("waiting for RHello: %w", err)
	}
	cert, err := handshake.ParseCertificate(rh.Certificate)
	if err != nil {
		return nil, "", err
	}
	pend, err := (&handshake.Initiator{ID: c.id}).Start(cert)
	if err != nil {
		return nil, "", err
	}
	var b [4]byte
	rand.Read(b[:])
	isid := binary.BigEndian.Uint32(b[:]) | 1
	ik := wire.IIKeying{ISID: isid, Cookie: rh.Cookie, Certificate: c.id.Certificate, SKIC: pend.SKIC, Signature: handshake.Signature}.Append(nil)
	if err := c.sendStartup(0, rhSrc, ik); err != nil {
		return nil, "", err
	}
	var rk wire.RIKeying
	err = c.await(deadline, func() error { return c.sendStartup(0, rhSrc, ik) }, func(sid uint32, _ netip.AddrPort, d []byte) bool {
		ch, ok := c.startupChunk(d)
		if !ok || sid != isid || ch.Type != wire.ChunkRIKeying {
			return false
		}
		r, err := wire.ParseRIKeying(ch.Payload)
		if err != nil {
			return false
		}
		rk = r
		return true
	})
	if err != nil {
		return nil, "", fmt.Errorf("waiting for RIKeying: %w", err)
	}
	keys, err := pend.Finish(rk.SKRC)
	if err != nil {
		return nil, "", err
	}
	sealer, opener := keys.Ciphers()
	obj := amf.NewObject("app", app, "tcUrl", url, "objectEncoding", 3.0)
	cmd, _ := flash.AppendCommand(nil, "connect", 1, obj)
	opts := append(wire.AppendOption(nil, wire.OptMetadata, flash.TCMetadata(0, false)), 0)
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(time.Now().UnixMilli() / 4)})
	pkt = wire.UserData{FlowID: 2, Seq: 1, FSNOffset: 1, Options: opts, Data: cmd}.Append(pkt)
	send := func() error {
		_, err := c.conn.WriteToUDPAddrPort(sealer.Seal(nil, rk.RSID, pkt), rhSrc)
		return err
	}
	if err := send(); err != nil {
		return nil, "", err
	}
	code := ""
	sess := &session{sealer: sealer, opener: opener, nearSID: isid, farSID: rk.RSID, server: rhSrc}
	err = c.await(deadline, send, func(sid uint32, _ netip.AddrPort, d []byte) bool {
		if sid != isid {
			return false
		}
		pt, err := opener.Open(d)
		if err != nil {
			return false
		}
		_, n, err := wire.ParseHeader(pt)
		if err != nil {
			return false
		}
		var prev wire.UserData
		for b := pt[n:]; ; {
			ch, rest, ok := wire.NextChunk(b)
			if !ok {
				break
			}
			b = rest
			ud, ok := sess.userData(ch, &prev)
			if !ok {
				continue
			}
			if ud.Flags&wire.UDFragMask != wire.UDFragWhole {
				continue // a fragment of a longer message: not the connect's answer
			}
			m, err := flash.ParseMessage(ud.Data)
			if err != nil {
				continue
			}
			if cm, err := flash.ParseCommand(m); err == nil && (cm.Name == "_result" || cm.Name == "_error") {
				sess.ctrlFlow = ud.FlowID
				for _, a := range cm.Args {
					if c, _, why := flash.InfoCode(a); c != "" {
						code = c
						if why != "" && cm.Name == "_error" {
							code += " (" + why + ")" // a refusal says why
						}
					}
				}
			}
		}
		// The connect's answer ends the exchange, whatever else the
		// server sends (Stratus follows it with a set-keepalive, other
		// servers send nothing more).
		return code != ""
	})
	if err != nil {
		return nil, "", fmt.Errorf("waiting for connect's answer: %w", err)
	}
	// Acknowledge what the server sent, as a real client would: otherwise
	// the server keeps retransmitting to an idle session.
	c.conn.WriteToUDPAddrPort(sess.ackPacket(nil), rhSrc)
	return sess, code, nil
}

// userData parses a user data chunk (prev is the one before it in the
// packet, for the abbreviated form) and records it for acknowledgement.
func (s *session) userData(ch wire.Chunk, prev *wire.UserData) (wire.UserData, bool) {
	if ch.Type != wire.ChunkUserData && ch.Type != wire.ChunkNextUserData {
		return wire.UserData{}, false
	}
	ud, err := wire.ParseUserData(ch.Payload, ch.Type == wire.ChunkNextUserData)
	if err != nil {
		return wire.UserData{}, false
	}
	if ud.Next {
		ud.FlowID, ud.Seq = prev.FlowID, prev.Seq+1
	}
	*prev = ud
	s.ack(ud.FlowID, ud.Seq)
	return ud, true
}

// ackPacket seals a packet acknowledging every server flow.
func (s *session) ackPacket(dst []byte) []byte {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(time.Now().UnixMilli() / 4)})
	for _, a := range s.acks {
		pkt = wire.Ack{FlowID: a.flow, Window: 127, Cum: a.cum}.Append(pkt, 100)
	}
	return s.sealer.Seal(dst, s.farSID, pkt)
}

// abort ends a session at once with a close acknowledgement.
func (c *client) abort(s *session) {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator})
	pkt = wire.AppendChunk(pkt, wire.ChunkCloseAck, nil)
	c.conn.WriteToUDPAddrPort(s.sealer.Seal(nil, s.farSID, pkt), c.server)
}

// lookup sends an IHello naming peerID to the server and waits for the
// Redirect (the server's introduction).
func (c *client) lookup(peerID [32]byte, deadline time.Time) error {
	return c.lookupTag(peerID, randomTag(), deadline)
}

// lookupTag is lookup with the caller's tag (to match what the target
// receives).
func (c *client) lookupTag(peerID [32]byte, tag []byte, deadline time.Time) error {
	hello := wire.IHello{EPD: handshake.FingerprintEPD(peerID), Tag: tag}.Append(nil)
	if err := c.sendStartup(0, c.server, hello); err != nil {
		return err
	}
	return c.await(deadline, func() error { return c.sendStartup(0, c.server, hello) }, func(sid uint32, _ netip.AddrPort, d []byte) bool {
		ch, ok := c.startupChunk(d)
		if !ok || sid != 0 || ch.Type != wire.ChunkRedirect {
			return false
		}
		r, err := wire.ParseRedirect(ch.Payload)
		return err == nil && string(r.Tag) == string(tag)
	})
}
