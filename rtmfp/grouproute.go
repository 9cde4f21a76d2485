package rtmfp

import (
	"encoding/hex"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
)

// Routing: sendToNearest, sendToNeighbor and sendToAllNeighbors between
// Stratus members.

// SendResult is what the sendTo methods return (NetGroupSendResult).
type SendResult string

// SendResult values.
const (
	SendSent    SendResult = "sent"
	SendNoRoute SendResult = "noRoute"
	SendError   SendResult = "error"
)

// SendMode picks the neighbour of SendToNeighbor (NetGroupSendMode).
type SendMode string

// SendMode values.
const (
	NextIncreasing SendMode = "nextIncreasing"
	NextDecreasing SendMode = "nextDecreasing"
)

func (ng *NetGroup) routingOK() bool { return ng.sp.Routing }

// SendToNearest delivers a message to the member whose group address is
// nearest groupAddress, hop by hop through neighbours (each forwards to
// its neighbour nearest the address, until a member is nearer than all
// its neighbours). That member gets NetGroup.SendTo.Notify; if it is this
// one, the event comes here with fromLocal true. Routing runs between
// Stratus members (neighbours that do not speak Stratus's routing layout
// are skipped).
func (ng *NetGroup) SendToNearest(message any, groupAddress string) SendResult {
	b, err := hex.DecodeString(groupAddress)
	return ng.sendTo(err == nil && len(b) == 32, message, func(body []byte) SendResult {
		return ng.route(false, group.Routed{Mode: group.ModeNearest, Dest: group.Addr(b), Origin: ng.selfAddr, Body: body}, message)
	})
}

// SendToNeighbor sends a message to the neighbour right after
// (NextIncreasing) or before (NextDecreasing) this member on the ring.
func (ng *NetGroup) SendToNeighbor(message any, mode SendMode) SendResult {
	return ng.sendTo(mode == NextIncreasing || mode == NextDecreasing, message, func(body []byte) SendResult {
		id, ok := ng.mesh.NextNeighbor(mode == NextIncreasing, ng.canRoute)
		if !ok {
			return SendNoRoute
		}
		ng.links[id].sendRouted(group.Routed{Mode: group.ModeNeighbor, Dest: group.AddressOf(id), Origin: ng.selfAddr, Body: body})
		return SendSent
	})
}

// SendToAllNeighbors sends a message to every neighbour.
func (ng *NetGroup) SendToAllNeighbors(message any) SendResult {
	return ng.sendTo(true, message, func(body []byte) SendResult {
		res := SendNoRoute
		for id, l := range ng.links {
			if ng.canRoute(id) {
				l.sendRouted(group.Routed{Mode: group.ModeNeighbor, Dest: group.AddressOf(id), Origin: ng.selfAddr, Body: body})
				res = SendSent
			}
		}
		return res
	})
}

// sendTo encodes a message and runs send on the loop; an invalid request
// or a group without routingEnabled gives SendError.
func (ng *NetGroup) sendTo(valid bool, message any, send func(body []byte) SendResult) SendResult {
	if !valid || !ng.routingOK() {
		return SendError
	}
	body, err := amf.AppendAMF0(nil, message)
	if err != nil {
		return SendError
	}
	res := SendError
	ng.call(func() { res = send(body) })
	return res
}

func (ng *NetGroup) canRoute(id [32]byte) bool {
	l := ng.links[id]
	return l != nil && l.connected && l.capable
}

// route delivers or forwards a routed message (mode nearest); received
// says it came from a neighbour rather than from this member's
// SendToNearest.
func (ng *NetGroup) route(received bool, r group.Routed, v any) SendResult {
	next, self := ng.mesh.Nearest(r.Dest, ng.canRoute)
	if self {
		ng.c.routedDelivered.Add(1)
		ng.emit(flash.LevelStatus, GroupSendToNotify, "message for the nearest member", "message", v,
			"from", r.Origin.String(), "fromLocal", !received)
		return SendSent
	}
	if int(r.Hops) >= group.MaxHops {
		ng.c.routedDropped.Add(1)
		return SendNoRoute
	}
	if received {
		r.Hops++
		ng.c.routedForwarded.Add(1)
	}
	ng.links[next].sendRouted(r)
	return SendSent
}

// onRouted handles a routed message from a neighbour.
func (ng *NetGroup) onRouted(msg []byte) {
	r, err := group.ParseRouted(msg)
	if err != nil || !ng.routingOK() {
		ng.c.routedDropped.Add(1)
		return
	}
	v, err := r.Value()
	if err != nil {
		ng.c.routedDropped.Add(1)
		return
	}
	if r.Mode == group.ModeNeighbor {
		ng.c.routedDelivered.Add(1)
		ng.emit(flash.LevelStatus, GroupSendToNotify, "message from a neighbour", "message", v,
			"from", r.Origin.String(), "fromLocal", false)
		return
	}
	ng.route(true, r, v)
}
