// Package amf encodes and decodes Action Message Format (AMF0 and AMF3), the
// serialization Flash uses for command and data messages carried over RTMFP.
//
// A message body is a sequence of AMF0 values; inside it, marker 0x11
// switches exactly one value (and everything nested in it) to AMF3. Decoder
// reads such a sequence; DecodeAMF3 reads a bare AMF3 value. AppendAMF0 and
// AppendAMF3 write values.
//
// # Go mapping
//
// Decoded values use a small closed set of Go types so callers can use a
// type switch:
//
//	AMF number, AMF3 integer     float64 (one numeric type for callers)
//	boolean                      bool
//	string, long string          string
//	null                         nil
//	undefined                    Undefined{}
//	AMF0 unsupported             Unsupported{}
//	object, typed object         *Object (Class "" = anonymous), pairs in wire order
//	AMF0 ECMA array              ECMAArray
//	AMF0 strict array            Array
//	AMF3 array                   Array, or AMF3Array if it has an associative part
//	AMF3 Vector.<*>              Array (numeric vectors hold float64)
//	AMF3 Dictionary              ECMAArray, keys rendered as strings
//	date                         time.Time in UTC, millisecond precision
//	AMF3 ByteArray               ByteArray
//	XML, XMLDocument             XML
//
// Objects are pointers so that references (including an object that refers
// to itself) decode to the same *Object; arrays referenced while still being
// decoded yield the part decoded so far, since a Go slice cannot contain
// itself.
//
// The encoders accept the same types plus conveniences (every Go integer and
// float type, map[string]any, []any, Object). They never write references,
// which is always legal and avoids the unspecified question of how long AMF3
// reference tables live across switched values. As a consequence, a decoded
// value that shares sub-values through references is written out in full,
// and a cyclic one fails with ErrDepth.
//
// # Untrusted input
//
// The decoder is meant for bytes straight from the network: it never panics,
// checks every declared length and count against the bytes that remain
// before allocating, limits nesting to 64 containers, and keeps its
// reference tables for the life of one Decoder (one message), as Cumulus,
// MonaServer and librtmfp do.
package amf

import (
	"math"
	"strconv"
	"time"
)

// maxDepth is the deepest container nesting accepted when decoding and
// written when encoding, so that anything we write we can also read.
const maxDepth = 64

// Undefined is AMF undefined. It is distinct from nil (null) because Flash
// sends both and ActionScript tells them apart.
type Undefined struct{}

// Unsupported is the AMF0 "unsupported" marker (0x0d), kept as its own value
// so that it survives a decode/encode round trip.
type Unsupported struct{}

// Pair is one key/value of an object or associative array, in wire order.
type Pair struct {
	Key   string
	Value any
}

// Object is an AMF0 object or typed object, or an AMF3 object (Class "" =
// anonymous). Pairs keep wire order and duplicates because both can matter
// when relaying what a peer sent.
type Object struct {
	Class string
	Pairs []Pair
}

// NewObject builds an anonymous object from alternating keys and values, in
// the order given: NewObject("level", "status", "code", "X"). It panics on
// an odd count or a non-string key, which are programming errors.
func NewObject(kv ...any) *Object {
	if len(kv)%2 != 0 {
		panic("amf: NewObject needs an even number of arguments")
	}
	o := &Object{Pairs: make([]Pair, 0, len(kv)/2)}
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			panic("amf: NewObject key " + strconv.Itoa(i/2) + " is not a string")
		}
		o.Pairs = append(o.Pairs, Pair{Key: k, Value: kv[i+1]})
	}
	return o
}

// Get returns the value of key. With duplicate keys the last one wins, as it
// does when Flash deserializes the object. A nil *Object has no keys.
func (o *Object) Get(key string) (any, bool) {
	if o == nil {
		return nil, false
	}
	for i := len(o.Pairs) - 1; i >= 0; i-- {
		if o.Pairs[i].Key == key {
			return o.Pairs[i].Value, true
		}
	}
	return nil, false
}

// GetString returns the value of key if it is a string (XML and other types
// do not count, so a caller cannot be fooled by a different type).
func (o *Object) GetString(key string) (string, bool) {
	v, _ := o.Get(key)
	s, ok := v.(string)
	return s, ok
}

// GetNumber returns the value of key if it is numeric. Decoded AMF numbers
// and AMF3 integers are both float64; Go integer and float32 values put in
// with Set are accepted too.
func (o *Object) GetNumber(key string) (float64, bool) {
	v, _ := o.Get(key)
	return toFloat(v)
}

// Set replaces the value of key, or appends the pair if key is absent, and
// returns o for chaining. Later duplicates of key are removed so the new
// value is the one every reader sees.
func (o *Object) Set(key string, v any) *Object {
	for i := range o.Pairs {
		if o.Pairs[i].Key != key {
			continue
		}
		o.Pairs[i].Value = v
		n := i + 1
		for _, p := range o.Pairs[i+1:] {
			if p.Key != key {
				o.Pairs[n] = p
				n++
			}
		}
		clear(o.Pairs[n:])
		o.Pairs = o.Pairs[:n]
		return o
	}
	o.Pairs = append(o.Pairs, Pair{Key: key, Value: v})
	return o
}

// ECMAArray is an AMF0 ECMA (associative) array. AMF3 dictionaries also
// decode to it.
type ECMAArray []Pair

// Array is an AMF0 strict array, or the dense part of an AMF3 array.
type Array []any

// AMF3Array is an AMF3 array with an associative part, which neither Array
// nor ECMAArray can hold without losing one of the two parts. Written with
// AppendAMF0 it is switched to AMF3.
type AMF3Array struct {
	Assoc []Pair
	Dense Array
}

// ByteArray is an AMF3 ByteArray. Written with AppendAMF0 it is switched to
// AMF3, as AMF0 has no binary type.
type ByteArray []byte

// XML is an XML document value (AMF0 XML document, AMF3 XML or XMLDocument).
type XML string

// toFloat converts any Go numeric type, so that values set by callers and
// values decoded from the wire read the same way.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int8:
		return float64(n), true
	case int16:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint8:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uintptr:
		return float64(n), true
	}
	return 0, false
}

// maxDateMs is the ECMAScript time-value range (±100 000 000 days); Flash
// treats anything outside it, and NaN, as an invalid Date.
const maxDateMs = 8.64e15

// msToTime converts an AMF date. Flash dates carry whole milliseconds, so
// the fraction is dropped (as ECMAScript TimeClip does); an invalid date
// becomes the zero time.Time rather than an error, so one odd field does not
// reject a whole message.
func msToTime(ms float64) time.Time {
	if !(ms >= -maxDateMs && ms <= maxDateMs) {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// timeToMs is the inverse of msToTime; times outside the ECMAScript range
// are written as NaN, Flash's invalid Date.
func timeToMs(t time.Time) float64 {
	const maxSec = maxDateMs / 1000
	if s := t.Unix(); s > maxSec || s < -maxSec {
		return math.NaN()
	}
	return float64(t.UnixMilli())
}
