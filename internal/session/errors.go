// Package session is an open RTMFP session (RFC 7016 §3.6): flows, user
// data fragmentation and reassembly, acknowledgements, buffer probes, flow
// exceptions, RTT and retransmission, congestion control, keepalive, close
// and address mobility. It is a state machine: every method takes the
// current time, nothing blocks or does I/O, and outgoing datagrams are
// handed to a callback. The engine owns the socket and the lock.
package session

import "errors"

// Errors.
var (
	ErrFlowClosed    = errors.New("session: flow is closed")
	ErrSessionClosed = errors.New("session: session is closed")
	ErrMode          = errors.New("session: packet header mode not allowed")
	ErrTooManyFlows  = errors.New("session: too many flows")
	ErrMetadata      = errors.New("session: flow metadata too large")
	ErrClosedByPeer  = errors.New("session: closed by the far end")
	ErrTimeout       = errors.New("session: far end stopped answering")
	ErrIdle          = errors.New("session: idle timeout")
	ErrAborted       = errors.New("session: aborted")
)
