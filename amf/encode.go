package amf

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// AppendAMF0 appends the AMF0 encoding of v to b. It accepts the types the
// decoder produces plus Go conveniences:
//
//	float64, float32, every int/uint type  number (0x00)
//	string                                 string (0x02), long string (0x0c) over 65535 bytes
//	bool, nil, Undefined, Unsupported      0x01, 0x05, 0x06, 0x0d
//	*Object, Object                        object (0x03), typed object (0x10) if Class != ""
//	map[string]any                         object, keys sorted for stable output
//	ECMAArray                              ECMA array (0x08)
//	Array, []any                           strict array (0x0a)
//	time.Time                              date (0x0b), time zone 0
//	XML                                    XML document (0x0f)
//	ByteArray, AMF3Array                   0x11 and the AMF3 value, as AMF0 cannot express them
//
// A nil *Object or map is written as null. No references are written, so a
// value with shared parts is written out in full and a cyclic value fails
// with ErrDepth, as does nesting beyond 64 containers (which the decoder
// would refuse). Object keys and class names over 65535 bytes fail with
// ErrTooLarge; other Go types fail with ErrUnsupported. On error b is
// returned unchanged in length.
func AppendAMF0(b []byte, v any) ([]byte, error) {
	out, err := appendAMF0(b, v, 0)
	if err != nil {
		return b, err
	}
	return out, nil
}

// AppendAMF3 appends the AMF3 encoding of v to b (no 0x11 prefix). It takes
// the same types as AppendAMF0. Go integer types in -2^28..2^28-1 are
// written as AMF3 integers, other numbers (including every float64) as
// doubles. Strings, traits and objects are always inline: the writer uses no
// reference tables, so its output means the same whatever tables the reader
// keeps. Objects are written as dynamic objects with inline traits and no
// sealed members (Class "" = anonymous), except that an object with an
// empty key is written with all keys as sealed members, since the empty
// string ends the dynamic part. ECMAArray and map keys go in an array's
// associative part, where an empty key cannot be expressed (ErrUnsupported).
// Unsupported has no AMF3 form (ErrUnsupported). On error b is returned
// unchanged in length.
func AppendAMF3(b []byte, v any) ([]byte, error) {
	out, err := appendAMF3(b, v, 0)
	if err != nil {
		return b, err
	}
	return out, nil
}

func appendF64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}

func errDepth() error {
	return fmt.Errorf("%w: more than %d nested containers (or a cycle)", ErrDepth, maxDepth)
}

func errType(v any, enc string) error {
	return fmt.Errorf("%w: %T in %s", ErrUnsupported, v, enc)
}

// appendKey0 writes an AMF0 object key or class name (u16 length, no marker).
func appendKey0(b []byte, s, what string) ([]byte, error) {
	if len(s) > math.MaxUint16 {
		return b, fmt.Errorf("%w: AMF0 %s of %d bytes", ErrTooLarge, what, len(s))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

// appendLong0 writes a u32 length and the bytes.
func appendLong0(b []byte, s string, what string) ([]byte, error) {
	if uint64(len(s)) > math.MaxUint32 {
		return b, fmt.Errorf("%w: AMF0 %s of %d bytes", ErrTooLarge, what, len(s))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...), nil
}

func appendPairs0(b []byte, pairs []Pair, depth int) ([]byte, error) {
	var err error
	for _, p := range pairs {
		if b, err = appendKey0(b, p.Key, "key"); err != nil {
			return b, err
		}
		if b, err = appendAMF0(b, p.Value, depth); err != nil {
			return b, err
		}
	}
	return append(b, 0, 0, 0x09), nil
}

func appendObject0(b []byte, o *Object, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return b, errDepth()
	}
	var err error
	if o.Class == "" {
		b = append(b, 0x03)
	} else {
		b = append(b, 0x10)
		if b, err = appendKey0(b, o.Class, "class name"); err != nil {
			return b, err
		}
	}
	return appendPairs0(b, o.Pairs, depth+1)
}

func appendAMF0(b []byte, v any, depth int) ([]byte, error) {
	if f, ok := toFloat(v); ok {
		return appendF64(append(b, 0x00), f), nil
	}
	switch v := v.(type) {
	case nil:
		return append(b, 0x05), nil
	case bool:
		if v {
			return append(b, 0x01, 0x01), nil
		}
		return append(b, 0x01, 0x00), nil
	case string:
		if len(v) <= math.MaxUint16 {
			b = binary.BigEndian.AppendUint16(append(b, 0x02), uint16(len(v)))
			return append(b, v...), nil
		}
		return appendLong0(append(b, 0x0c), v, "long string")
	case Undefined:
		return append(b, 0x06), nil
	case Unsupported:
		return append(b, 0x0d), nil
	case *Object:
		if v == nil {
			return append(b, 0x05), nil
		}
		return appendObject0(b, v, depth)
	case Object:
		return appendObject0(b, &v, depth)
	case map[string]any:
		if v == nil {
			return append(b, 0x05), nil
		}
		return appendObject0(b, &Object{Pairs: sortedPairs(v)}, depth)
	case ECMAArray:
		if depth >= maxDepth {
			return b, errDepth()
		}
		if uint64(len(v)) > math.MaxUint32 {
			return b, fmt.Errorf("%w: ECMA array of %d pairs", ErrTooLarge, len(v))
		}
		b = binary.BigEndian.AppendUint32(append(b, 0x08), uint32(len(v)))
		return appendPairs0(b, v, depth+1)
	case Array:
		return appendStrict0(b, v, depth)
	case []any:
		return appendStrict0(b, v, depth)
	case time.Time:
		b = appendF64(append(b, 0x0b), timeToMs(v))
		return append(b, 0, 0), nil
	case XML:
		return appendLong0(append(b, 0x0f), string(v), "XML")
	case ByteArray, AMF3Array:
		return appendAMF3(append(b, 0x11), v, depth)
	}
	return b, errType(v, "AMF0")
}

func appendStrict0(b []byte, a []any, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return b, errDepth()
	}
	if uint64(len(a)) > math.MaxUint32 {
		return b, fmt.Errorf("%w: strict array of %d items", ErrTooLarge, len(a))
	}
	b = binary.BigEndian.AppendUint32(append(b, 0x0a), uint32(len(a)))
	var err error
	for _, x := range a {
		if b, err = appendAMF0(b, x, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

func sortedPairs(m map[string]any) []Pair {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]Pair, len(keys))
	for i, k := range keys {
		pairs[i] = Pair{Key: k, Value: m[k]}
	}
	return pairs
}

// AMF3 integer range and U29 length limit.
const (
	minInt29 = -1 << 28
	maxInt29 = 1<<28 - 1
	maxU29   = 1<<29 - 1
)

// appendU29 writes the low 29 bits of v.
func appendU29(b []byte, v uint32) []byte {
	v &= maxU29
	switch {
	case v < 0x80:
		return append(b, byte(v))
	case v < 0x4000:
		return append(b, byte(v>>7)|0x80, byte(v&0x7f))
	case v < 0x200000:
		return append(b, byte(v>>14)|0x80, byte(v>>7)|0x80, byte(v&0x7f))
	}
	return append(b, byte(v>>22)|0x80, byte(v>>15)|0x80, byte(v>>8)|0x80, byte(v))
}

// appendInline3 writes an inline length (n<<1 | 1); n must fit in 28 bits.
func appendInline3(b []byte, n int, what string) ([]byte, error) {
	if uint64(n) > maxInt29 {
		return b, fmt.Errorf("%w: AMF3 %s of length %d", ErrTooLarge, what, n)
	}
	return appendU29(b, uint32(n)<<1|1), nil
}

// appendString3 writes an AMF3 string body (no marker), always inline.
func appendString3(b []byte, s, what string) ([]byte, error) {
	b, err := appendInline3(b, len(s), what)
	if err != nil {
		return b, err
	}
	return append(b, s...), nil
}

// int29 reports whether v is a Go integer in AMF3 integer range.
func int29(v any) (int64, bool) {
	var i int64
	switch n := v.(type) {
	case int:
		i = int64(n)
	case int8:
		i = int64(n)
	case int16:
		i = int64(n)
	case int32:
		i = int64(n)
	case int64:
		i = n
	case uint:
		if uint64(n) > maxInt29 {
			return 0, false
		}
		i = int64(n)
	case uint8:
		i = int64(n)
	case uint16:
		i = int64(n)
	case uint32:
		i = int64(n)
	case uint64:
		if n > maxInt29 {
			return 0, false
		}
		i = int64(n)
	case uintptr:
		if uint64(n) > maxInt29 {
			return 0, false
		}
		i = int64(n)
	default:
		return 0, false
	}
	return i, i >= minInt29 && i <= maxInt29
}

func appendAMF3(b []byte, v any, depth int) ([]byte, error) {
	if i, ok := int29(v); ok {
		return appendU29(append(b, 0x04), uint32(i)), nil
	}
	if f, ok := toFloat(v); ok {
		return appendF64(append(b, 0x05), f), nil
	}
	var err error
	switch v := v.(type) {
	case nil:
		return append(b, 0x01), nil
	case Undefined:
		return append(b, 0x00), nil
	case bool:
		if v {
			return append(b, 0x03), nil
		}
		return append(b, 0x02), nil
	case string:
		return appendString3(append(b, 0x06), v, "string")
	case XML:
		return appendString3(append(b, 0x0b), string(v), "XML")
	case time.Time:
		return appendF64(append(b, 0x08, 0x01), timeToMs(v)), nil
	case ByteArray:
		if b, err = appendInline3(append(b, 0x0c), len(v), "ByteArray"); err != nil {
			return b, err
		}
		return append(b, v...), nil
	case *Object:
		if v == nil {
			return append(b, 0x01), nil
		}
		return appendObject3(b, v, depth)
	case Object:
		return appendObject3(b, &v, depth)
	case map[string]any:
		if v == nil {
			return append(b, 0x01), nil
		}
		return appendObject3(b, &Object{Pairs: sortedPairs(v)}, depth)
	case Array:
		return appendArray3(b, nil, v, depth)
	case []any:
		return appendArray3(b, nil, v, depth)
	case ECMAArray:
		return appendArray3(b, v, nil, depth)
	case AMF3Array:
		return appendArray3(b, v.Assoc, v.Dense, depth)
	}
	return b, errType(v, "AMF3")
}

func appendArray3(b []byte, assoc []Pair, dense []any, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return b, errDepth()
	}
	b, err := appendInline3(append(b, 0x09), len(dense), "array")
	if err != nil {
		return b, err
	}
	for _, p := range assoc {
		if p.Key == "" {
			return b, fmt.Errorf("%w: empty key in an AMF3 associative array", ErrUnsupported)
		}
		if b, err = appendString3(b, p.Key, "array key"); err != nil {
			return b, err
		}
		if b, err = appendAMF3(b, p.Value, depth+1); err != nil {
			return b, err
		}
	}
	b = append(b, 0x01)
	for _, x := range dense {
		if b, err = appendAMF3(b, x, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendObject3(b []byte, o *Object, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return b, errDepth()
	}
	sealed := slices.ContainsFunc(o.Pairs, func(p Pair) bool { return p.Key == "" })
	b = append(b, 0x0a)
	if sealed {
		// Inline object, inline traits, not externalizable, not
		// dynamic, every key a sealed member.
		if uint64(len(o.Pairs)) > maxU29>>4 {
			return b, fmt.Errorf("%w: AMF3 object with %d sealed members", ErrTooLarge, len(o.Pairs))
		}
		b = appendU29(b, uint32(len(o.Pairs))<<4|0x03)
	} else {
		b = append(b, 0x0b) // inline object, inline traits, dynamic, no sealed members
	}
	b, err := appendString3(b, o.Class, "class name")
	if err != nil {
		return b, err
	}
	if sealed {
		for _, p := range o.Pairs {
			if b, err = appendString3(b, p.Key, "member name"); err != nil {
				return b, err
			}
		}
		for _, p := range o.Pairs {
			if b, err = appendAMF3(b, p.Value, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	for _, p := range o.Pairs {
		if b, err = appendString3(b, p.Key, "member name"); err != nil {
			return b, err
		}
		if b, err = appendAMF3(b, p.Value, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, 0x01), nil
}
