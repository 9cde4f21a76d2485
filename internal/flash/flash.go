// Package flash is the Flash profile on top of RTMFP flows (RFC 7425 §5):
// TC messages and their types, command and data messages with AMF bodies,
// user control events (set keepalive timers 0x29 among them), the per-flow
// TC metadata that names a NetConnection or NetStream, and status info
// objects with the Flash codes. Pure functions; parsing is defensive.
package flash

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// TC message types (reference §3.2).
const (
	TypeSetChunkSize = 0x01
	TypeUserControl  = 0x04
	TypeAudio        = 0x08
	TypeVideo        = 0x09
	TypeDataAMF3     = 0x0f
	TypeCommandAMF3  = 0x11
	TypeData         = 0x12
	TypeCommand      = 0x14
)

// Errors.
var (
	ErrShort   = errors.New("flash: message too short")
	ErrFormat  = errors.New("flash: unknown AMF3 message format byte")
	ErrCommand = errors.New("flash: malformed command")
	ErrType    = errors.New("flash: not a command or data message")
)

// Message is one TC message: type, 32-bit timestamp, payload.
type Message struct {
	Type      byte
	Timestamp uint32
	Payload   []byte
}

// ParseMessage splits a flow message into its TC header and payload.
func ParseMessage(b []byte) (Message, error) {
	if len(b) < 5 {
		return Message{}, ErrShort
	}
	return Message{Type: b[0], Timestamp: binary.BigEndian.Uint32(b[1:5]), Payload: b[5:]}, nil
}

// AppendMessageHeader appends a TC header.
func AppendMessageHeader(b []byte, typ byte, ts uint32) []byte {
	b = append(b, typ)
	return binary.BigEndian.AppendUint32(b, ts)
}

// amfBody returns the AMF part of a command or data message: types 0x11
// and 0x0f carry a format byte that must be 0.
func amfBody(m Message) ([]byte, error) {
	switch m.Type {
	case TypeCommand, TypeData:
		return m.Payload, nil
	case TypeCommandAMF3, TypeDataAMF3:
		if len(m.Payload) < 1 {
			return nil, ErrShort
		}
		if m.Payload[0] != 0 {
			return nil, ErrFormat
		}
		return m.Payload[1:], nil
	}
	return nil, ErrType
}

// IsCommand reports a command message (types 0x14 and 0x11).
func (m Message) IsCommand() bool { return m.Type == TypeCommand || m.Type == TypeCommandAMF3 }

// IsData reports a data message (types 0x12 and 0x0f).
func (m Message) IsData() bool { return m.Type == TypeData || m.Type == TypeDataAMF3 }

// Command is a command message: name, transaction ID, command object (null
// except for connect) and arguments.
type Command struct {
	Name   string
	TxID   float64
	Object any
	Args   []any
}

// Arguments are the values after the transaction ID, less a null or
// undefined command object. Flash and Cirrus send a null command object
// before the arguments; librtmfp leaves it out (its setPeerInfo and
// onStatus), so there the first argument sits where the object would.
func (c Command) Arguments() []any {
	switch c.Object.(type) {
	case nil, amf.Undefined:
		return c.Args
	}
	return append([]any{c.Object}, c.Args...)
}

// ParseCommand decodes a command message (type 0x14 or 0x11).
func ParseCommand(m Message) (Command, error) {
	if !m.IsCommand() {
		return Command{}, ErrType
	}
	body, err := amfBody(m)
	if err != nil {
		return Command{}, err
	}
	d := amf.NewDecoder(body)
	nameV, err := d.Next()
	if err != nil {
		return Command{}, fmt.Errorf("%w: name: %v", ErrCommand, err)
	}
	name, ok := nameV.(string)
	if !ok {
		return Command{}, fmt.Errorf("%w: name is %T", ErrCommand, nameV)
	}
	c := Command{Name: name}
	if d.Remaining() == 0 {
		return c, nil
	}
	tx, err := d.Next()
	if err != nil {
		return Command{}, fmt.Errorf("%w: transaction ID: %v", ErrCommand, err)
	}
	c.TxID, _ = tx.(float64)
	if d.Remaining() == 0 {
		return c, nil
	}
	if c.Object, err = d.Next(); err != nil {
		return Command{}, fmt.Errorf("%w: command object: %v", ErrCommand, err)
	}
	for d.Remaining() > 0 {
		v, err := d.Next()
		if err != nil {
			// Keep the arguments that decoded: a trailing bad value
			// should not lose the command (setPeerInfo from mobile
			// clients carries garbage).
			return c, fmt.Errorf("%w: argument %d: %v", ErrCommand, len(c.Args), err)
		}
		c.Args = append(c.Args, v)
		if len(c.Args) > 1024 {
			return c, fmt.Errorf("%w: too many arguments", ErrCommand)
		}
	}
	return c, nil
}

// AppendCommand appends an AMF0 command message (type 0x14, timestamp 0,
// what every sender should originate).
func AppendCommand(b []byte, name string, txID float64, obj any, args ...any) ([]byte, error) {
	b = AppendMessageHeader(b, TypeCommand, 0)
	var err error
	if b, err = amf.AppendAMF0(b, name); err != nil {
		return nil, err
	}
	if b, err = amf.AppendAMF0(b, txID); err != nil {
		return nil, err
	}
	if b, err = amf.AppendAMF0(b, obj); err != nil {
		return nil, err
	}
	for _, a := range args {
		if b, err = amf.AppendAMF0(b, a); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Data is a data message: handler name and values.
type Data struct {
	Handler string
	Args    []any
}

// ParseData decodes a data message (type 0x12 or 0x0f).
func ParseData(m Message) (Data, error) {
	if !m.IsData() {
		return Data{}, ErrType
	}
	body, err := amfBody(m)
	if err != nil {
		return Data{}, err
	}
	d := amf.NewDecoder(body)
	h, err := d.Next()
	if err != nil {
		return Data{}, err
	}
	name, ok := h.(string)
	if !ok {
		return Data{}, fmt.Errorf("%w: handler is %T", ErrCommand, h)
	}
	out := Data{Handler: name}
	for d.Remaining() > 0 {
		v, err := d.Next()
		if err != nil {
			return out, err
		}
		out.Args = append(out.Args, v)
		if len(out.Args) > 1024 {
			return out, fmt.Errorf("%w: too many values", ErrCommand)
		}
	}
	return out, nil
}

// AppendData appends an AMF0 data message (type 0x12).
func AppendData(b []byte, ts uint32, handler string, args ...any) ([]byte, error) {
	b = AppendMessageHeader(b, TypeData, ts)
	var err error
	if b, err = amf.AppendAMF0(b, handler); err != nil {
		return nil, err
	}
	for _, a := range args {
		if b, err = amf.AppendAMF0(b, a); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// User control event types (reference §3.6).
const (
	EventStreamBegin  = 0x0000
	EventStreamEOF    = 0x0001
	EventSetBuffer    = 0x0003
	EventPingRequest  = 0x0006
	EventPingResponse = 0x0007
	EventFlowSync     = 0x0022
	EventSetKeepalive = 0x0029
)

// ParseUserControl splits a user control message into event type and data.
func ParseUserControl(m Message) (uint16, []byte, error) {
	if m.Type != TypeUserControl {
		return 0, nil, ErrType
	}
	if len(m.Payload) < 2 {
		return 0, nil, ErrShort
	}
	return binary.BigEndian.Uint16(m.Payload), m.Payload[2:], nil
}

// AppendUserControl appends a user control message.
func AppendUserControl(b []byte, event uint16, values ...uint32) []byte {
	b = AppendMessageHeader(b, TypeUserControl, 0)
	b = binary.BigEndian.AppendUint16(b, event)
	for _, v := range values {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// AppendSetKeepalive appends the "set keepalive timers" event (0x29): the
// server and peer keepalive periods in milliseconds.
func AppendSetKeepalive(b []byte, serverMS, peerMS uint32) []byte {
	return AppendUserControl(b, EventSetKeepalive, serverMS, peerMS)
}

// ParseSetKeepalive decodes event 0x29's data.
func ParseSetKeepalive(data []byte) (serverMS, peerMS uint32, err error) {
	if len(data) < 8 {
		return 0, 0, ErrShort
	}
	return binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[4:]), nil
}

// TC metadata flags (reference §2.2).
const (
	tcFlagArrival  = 0x01 // RXI: deliver as messages arrive
	tcFlagStreamID = 0x04 // a stream ID follows
)

// Metadata is a flow's TC metadata: which NetConnection (stream 0) or
// NetStream it belongs to, and how the receiver should order it.
type Metadata struct {
	StreamID     uint64
	ArrivalOrder bool
}

// ParseTCMetadata parses "TC" metadata; ok is false for anything else
// (NetGroup flows say "GC"/"GR").
func ParseTCMetadata(b []byte) (Metadata, bool) {
	if len(b) < 3 || b[0] != 'T' || b[1] != 'C' || b[2]&tcFlagStreamID == 0 {
		return Metadata{}, false
	}
	id, _, err := wire.ParseVLU(b[3:])
	if err != nil {
		return Metadata{}, false
	}
	return Metadata{StreamID: id, ArrivalOrder: b[2]&tcFlagArrival != 0}, true
}

// TCMetadata encodes TC metadata the way Flash does (flags 0x04, or 0x05
// for arrival order).
func TCMetadata(streamID uint64, arrivalOrder bool) []byte {
	flags := byte(tcFlagStreamID)
	if arrivalOrder {
		flags |= tcFlagArrival
	}
	return wire.AppendVLU([]byte{'T', 'C', flags}, streamID)
}

// GroupMetadata is the NetGroup server channel's metadata ("GC").
var GroupMetadata = []byte("GC")

// Status levels.
const (
	LevelStatus = "status"
	LevelError  = "error"
)

// NetConnection and NetStream status codes.
const (
	ConnectSuccess       = "NetConnection.Connect.Success"
	ConnectFailed        = "NetConnection.Connect.Failed"
	ConnectRejected      = "NetConnection.Connect.Rejected"
	ConnectClosed        = "NetConnection.Connect.Closed"
	ConnectInvalidApp    = "NetConnection.Connect.InvalidApp"
	ConnectAppShutdown   = "NetConnection.Connect.AppShutdown"
	ConnectIdleTimeout   = "NetConnection.Connect.IdleTimeout"
	ConnectNetworkChange = "NetConnection.Connect.NetworkChange"
	CallFailed           = "NetConnection.Call.Failed"
	PlayFailed           = "NetStream.Play.Failed"
	PublishBadName       = "NetStream.Publish.BadName"
)

// Info builds a status info object: level, code, description, then any
// extra key/value pairs.
func Info(level, code, description string, extra ...any) *amf.Object {
	o := amf.NewObject("level", level, "code", code, "description", description)
	for i := 0; i+1 < len(extra); i += 2 {
		if k, ok := extra[i].(string); ok {
			o.Set(k, extra[i+1])
		}
	}
	return o
}

// InfoCode returns the code and level of an info object, if it is one.
func InfoCode(v any) (code, level, description string) {
	o, ok := v.(*amf.Object)
	if !ok {
		return "", "", ""
	}
	code, _ = o.GetString("code")
	level, _ = o.GetString("level")
	description, _ = o.GetString("description")
	return code, level, description
}
