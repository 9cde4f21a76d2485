package amf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Decoder reads a sequence of AMF0 values, such as the body of a command or
// data message. Marker 0x11 switches exactly one value to AMF3. Reference
// tables (the AMF0 one and the three AMF3 ones) live as long as the Decoder,
// so use one Decoder per message.
//
// After an error the Decoder's position is unspecified and Next keeps
// returning that error.
type Decoder struct {
	b     []byte
	off   int
	depth int
	err   error

	refs0   []any      // AMF0 objects, typed objects, ECMA and strict arrays
	strs3   []string   // AMF3 string table (never holds "")
	objs3   []any      // AMF3 object table
	traits3 []*traits3 // AMF3 traits table
}

// traits3 is one AMF3 class description, kept so later objects can refer to
// it by index.
type traits3 struct {
	class   string
	sealed  []string
	dynamic bool
}

// NewDecoder returns a Decoder reading b. The Decoder does not modify b, and
// decoded values do not alias it (byte arrays are copied), so b may be
// reused once decoding is done.
func NewDecoder(b []byte) *Decoder {
	return &Decoder{b: b}
}

// Next decodes the next AMF0 value. It returns io.EOF, unwrapped, when no
// bytes remain.
func (d *Decoder) Next() (any, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.off >= len(d.b) {
		return nil, io.EOF
	}
	d.depth = 0
	v, err := d.value0()
	if err != nil {
		d.err = err
		return nil, err
	}
	return v, nil
}

// Remaining returns the number of bytes not yet consumed.
func (d *Decoder) Remaining() int {
	return len(d.b) - d.off
}

// DecodeAll decodes every AMF0 value in b with one Decoder (so references
// may span values). On error it returns nil and the error.
func DecodeAll(b []byte) ([]any, error) {
	d := NewDecoder(b)
	var vals []any
	for {
		v, err := d.Next()
		if err == io.EOF {
			return vals, nil
		}
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
}

// DecodeAMF3 decodes one AMF3 value from the start of b with fresh reference
// tables and returns it with the number of bytes consumed.
func DecodeAMF3(b []byte) (any, int, error) {
	d := NewDecoder(b)
	v, err := d.value3()
	if err != nil {
		return nil, d.off, err
	}
	return v, d.off, nil
}

// fail wraps a sentinel with what was being read and where, which is what
// one needs to make sense of a bad capture.
func (d *Decoder) fail(sentinel error, what string) error {
	return fmt.Errorf("%w: %s at offset %d", sentinel, what, d.off)
}

func (d *Decoder) remaining() int { return len(d.b) - d.off }

// take returns the next n bytes, aliasing the input.
func (d *Decoder) take(n uint64, what string) ([]byte, error) {
	if n > uint64(d.remaining()) {
		return nil, d.fail(ErrTruncated, what)
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p, nil
}

func (d *Decoder) u8(what string) (byte, error) {
	if d.off >= len(d.b) {
		return 0, d.fail(ErrTruncated, what)
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *Decoder) u16(what string) (uint16, error) {
	p, err := d.take(2, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(p), nil
}

func (d *Decoder) u32(what string) (uint32, error) {
	p, err := d.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(p), nil
}

func (d *Decoder) f64(what string) (float64, error) {
	p, err := d.take(8, what)
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.BigEndian.Uint64(p)), nil
}

// str reads n bytes as a (copied) string.
func (d *Decoder) str(n uint64, what string) (string, error) {
	p, err := d.take(n, what)
	if err != nil {
		return "", err
	}
	return string(p), nil
}

// enter and leave bracket every container so nesting is bounded.
func (d *Decoder) enter() error {
	if d.depth >= maxDepth {
		return d.fail(ErrDepth, "container")
	}
	d.depth++
	return nil
}

func (d *Decoder) leave() { d.depth-- }

// checkCount rejects a declared element count that cannot be satisfied by
// the remaining input (each element taking at least minSize bytes), so a
// tiny message cannot make us allocate for billions of elements.
func (d *Decoder) checkCount(n uint64, minSize uint64, what string) error {
	if n > uint64(d.remaining())/minSize {
		return d.fail(ErrTruncated, what+" count")
	}
	return nil
}

// initialCap bounds up-front allocation; slices grow with the elements that
// actually decode, so memory tracks real input rather than declared counts
// even across nested containers.
func initialCap(n uint64) int {
	return int(min(n, 1024))
}

// Kinds of containers whose Go value is a slice and so only exists once
// decoding finishes.
const (
	kindArray     = iota // Array
	kindECMA             // ECMAArray
	kindAMF3Array        // Array or AMF3Array
)

// building stands in a reference table for an array still being decoded; a
// reference to it yields what has been decoded so far.
type building struct {
	kind  int
	pairs []Pair
	items Array
}

func (b *building) value() any {
	switch b.kind {
	case kindECMA:
		if b.pairs == nil {
			return ECMAArray{}
		}
		return ECMAArray(b.pairs[:len(b.pairs):len(b.pairs)])
	case kindAMF3Array:
		if len(b.pairs) > 0 {
			return AMF3Array{Assoc: b.pairs[:len(b.pairs):len(b.pairs)], Dense: b.items[:len(b.items):len(b.items)]}
		}
	}
	if b.items == nil {
		return Array{}
	}
	return b.items[:len(b.items):len(b.items)]
}

// resolve turns a reference-table entry into a value.
func resolve(v any) any {
	if b, ok := v.(*building); ok {
		return b.value()
	}
	return v
}

// value0 decodes one AMF0 value.
func (d *Decoder) value0() (any, error) {
	m, err := d.u8("AMF0 marker")
	if err != nil {
		return nil, err
	}
	switch m {
	case 0x00:
		return d.f64("AMF0 number")
	case 0x01:
		c, err := d.u8("AMF0 boolean")
		return c != 0, err
	case 0x02:
		n, err := d.u16("AMF0 string length")
		if err != nil {
			return nil, err
		}
		return d.str(uint64(n), "AMF0 string")
	case 0x03:
		return d.object0("")
	case 0x05:
		return nil, nil
	case 0x06:
		return Undefined{}, nil
	case 0x07:
		i, err := d.u16("AMF0 reference")
		if err != nil {
			return nil, err
		}
		if int(i) >= len(d.refs0) {
			return nil, d.fail(ErrReference, "AMF0 reference")
		}
		return resolve(d.refs0[i]), nil
	case 0x08:
		// The count is only a hint (writers get it wrong); the end
		// marker is what ends the array.
		if _, err := d.u32("AMF0 ECMA array count"); err != nil {
			return nil, err
		}
		return d.ecma0()
	case 0x0a:
		return d.strict0()
	case 0x0b:
		ms, err := d.f64("AMF0 date")
		if err != nil {
			return nil, err
		}
		if _, err := d.u16("AMF0 date time zone"); err != nil {
			return nil, err
		}
		return msToTime(ms), nil
	case 0x0c:
		n, err := d.u32("AMF0 long string length")
		if err != nil {
			return nil, err
		}
		return d.str(uint64(n), "AMF0 long string")
	case 0x0d:
		return Unsupported{}, nil
	case 0x0f:
		n, err := d.u32("AMF0 XML length")
		if err != nil {
			return nil, err
		}
		s, err := d.str(uint64(n), "AMF0 XML")
		return XML(s), err
	case 0x10:
		n, err := d.u16("AMF0 class name length")
		if err != nil {
			return nil, err
		}
		class, err := d.str(uint64(n), "AMF0 class name")
		if err != nil {
			return nil, err
		}
		return d.object0(class)
	case 0x11:
		return d.value3()
	}
	d.off--
	return nil, d.fail(ErrMarker, fmt.Sprintf("AMF0 marker 0x%02x", m))
}

// pairs0 reads AMF0 key/value pairs up to the 00 00 09 end marker, calling
// add for each so the container can be filled (and referenced) in place.
func (d *Decoder) pairs0(add func(Pair)) error {
	for {
		n, err := d.u16("AMF0 key length")
		if err != nil {
			return err
		}
		if n == 0 {
			c, err := d.u8("AMF0 object end")
			if err != nil {
				return err
			}
			if c == 0x09 {
				return nil
			}
			// An empty key followed by a value is unambiguous (no value
			// starts with 09), so accept it rather than reject the message.
			d.off--
		}
		key, err := d.str(uint64(n), "AMF0 key")
		if err != nil {
			return err
		}
		v, err := d.value0()
		if err != nil {
			return err
		}
		add(Pair{Key: key, Value: v})
	}
}

func (d *Decoder) object0(class string) (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	o := &Object{Class: class}
	d.refs0 = append(d.refs0, o)
	if err := d.pairs0(func(p Pair) { o.Pairs = append(o.Pairs, p) }); err != nil {
		return nil, err
	}
	return o, nil
}

func (d *Decoder) ecma0() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	b := &building{kind: kindECMA, pairs: []Pair{}}
	i := len(d.refs0)
	d.refs0 = append(d.refs0, b)
	if err := d.pairs0(func(p Pair) { b.pairs = append(b.pairs, p) }); err != nil {
		return nil, err
	}
	v := b.value()
	d.refs0[i] = v
	return v, nil
}

func (d *Decoder) strict0() (any, error) {
	n, err := d.u32("AMF0 strict array count")
	if err != nil {
		return nil, err
	}
	if err := d.checkCount(uint64(n), 1, "AMF0 strict array"); err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	b := &building{kind: kindArray, items: make(Array, 0, initialCap(uint64(n)))}
	i := len(d.refs0)
	d.refs0 = append(d.refs0, b)
	for range n {
		v, err := d.value0()
		if err != nil {
			return nil, err
		}
		b.items = append(b.items, v)
	}
	v := b.value()
	d.refs0[i] = v
	return v, nil
}
