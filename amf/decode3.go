package amf

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// u29 reads an AMF3 variable-length integer: up to three bytes of 7 bits
// with a continuation bit, then a fourth byte of 8 bits.
func (d *Decoder) u29(what string) (uint32, error) {
	var v uint32
	for range 3 {
		c, err := d.u8(what)
		if err != nil {
			return 0, err
		}
		if c&0x80 == 0 {
			return v<<7 | uint32(c), nil
		}
		v = v<<7 | uint32(c&0x7f)
	}
	c, err := d.u8(what)
	if err != nil {
		return 0, err
	}
	return v<<8 | uint32(c), nil
}

// objRef3 resolves an AMF3 object-table reference.
func (d *Decoder) objRef3(i uint32, what string) (any, error) {
	if uint64(i) >= uint64(len(d.objs3)) {
		return nil, d.fail(ErrReference, what+" reference")
	}
	return resolve(d.objs3[i]), nil
}

// string3 reads an AMF3 string (value, key, class or member name), inline
// or by reference.
func (d *Decoder) string3(what string) (string, error) {
	u, err := d.u29(what)
	if err != nil {
		return "", err
	}
	if u&1 == 0 {
		i := u >> 1
		if uint64(i) >= uint64(len(d.strs3)) {
			return "", d.fail(ErrReference, what+" reference")
		}
		return d.strs3[i], nil
	}
	if u>>1 == 0 {
		return "", nil // the empty string is never put in the table
	}
	s, err := d.str(uint64(u>>1), what)
	if err != nil {
		return "", err
	}
	d.strs3 = append(d.strs3, s)
	return s, nil
}

// value3 decodes one AMF3 value.
func (d *Decoder) value3() (any, error) {
	m, err := d.u8("AMF3 marker")
	if err != nil {
		return nil, err
	}
	switch m {
	case 0x00:
		return Undefined{}, nil
	case 0x01:
		return nil, nil
	case 0x02:
		return false, nil
	case 0x03:
		return true, nil
	case 0x04:
		u, err := d.u29("AMF3 integer")
		if err != nil {
			return nil, err
		}
		return float64(int32(u<<3) >> 3), nil // sign-extend 29 bits
	case 0x05:
		return d.f64("AMF3 double")
	case 0x06:
		return d.string3("AMF3 string")
	case 0x07, 0x0b:
		return d.xml3()
	case 0x08:
		return d.date3()
	case 0x09:
		return d.array3()
	case 0x0a:
		return d.object3()
	case 0x0c:
		return d.byteArray3()
	case 0x0d, 0x0e, 0x0f:
		return d.numVector3(m)
	case 0x10:
		return d.objVector3()
	case 0x11:
		return d.dictionary3()
	}
	d.off--
	return nil, d.fail(ErrMarker, fmt.Sprintf("AMF3 marker 0x%02x", m))
}

func (d *Decoder) xml3() (any, error) {
	u, err := d.u29("AMF3 XML")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 XML")
	}
	s, err := d.str(uint64(u>>1), "AMF3 XML")
	if err != nil {
		return nil, err
	}
	d.objs3 = append(d.objs3, XML(s))
	return XML(s), nil
}

func (d *Decoder) date3() (any, error) {
	u, err := d.u29("AMF3 date")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 date")
	}
	ms, err := d.f64("AMF3 date")
	if err != nil {
		return nil, err
	}
	t := msToTime(ms)
	d.objs3 = append(d.objs3, t)
	return t, nil
}

func (d *Decoder) byteArray3() (any, error) {
	u, err := d.u29("AMF3 ByteArray")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 ByteArray")
	}
	p, err := d.take(uint64(u>>1), "AMF3 ByteArray")
	if err != nil {
		return nil, err
	}
	ba := ByteArray(append([]byte{}, p...))
	d.objs3 = append(d.objs3, ba)
	return ba, nil
}

func (d *Decoder) array3() (any, error) {
	u, err := d.u29("AMF3 array")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 array")
	}
	n := uint64(u >> 1)
	// Dense items and the empty-string terminator of the associative
	// part each take at least one byte.
	if err := d.checkCount(n+1, 1, "AMF3 array"); err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	b := &building{kind: kindAMF3Array, items: make(Array, 0, initialCap(n))}
	i := len(d.objs3)
	d.objs3 = append(d.objs3, b)
	for {
		k, err := d.string3("AMF3 array key")
		if err != nil {
			return nil, err
		}
		if k == "" {
			break
		}
		v, err := d.value3()
		if err != nil {
			return nil, err
		}
		b.pairs = append(b.pairs, Pair{Key: k, Value: v})
	}
	if err := d.checkCount(n, 1, "AMF3 array"); err != nil {
		return nil, err
	}
	return d.denseItems3(b, i, n)
}

func (d *Decoder) object3() (any, error) {
	u, err := d.u29("AMF3 object traits")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 object")
	}
	var t *traits3
	switch {
	case u&2 == 0:
		i := u >> 2
		if uint64(i) >= uint64(len(d.traits3)) {
			return nil, d.fail(ErrReference, "AMF3 traits reference")
		}
		t = d.traits3[i]
	case u&4 != 0:
		// The body of an externalizable object is whatever the class's
		// readExternal expects; without the class it cannot be skipped.
		class, err := d.string3("AMF3 class name")
		if err != nil {
			return nil, err
		}
		if len(class) > 64 {
			class = class[:64] + "..."
		}
		return nil, d.fail(ErrUnsupported, fmt.Sprintf("externalizable AMF3 object of class %q", class))
	default:
		n := uint64(u >> 4)
		if err := d.checkCount(n, 1, "AMF3 sealed member"); err != nil {
			return nil, err
		}
		t = &traits3{dynamic: u&8 != 0}
		if t.class, err = d.string3("AMF3 class name"); err != nil {
			return nil, err
		}
		t.sealed = make([]string, 0, initialCap(n))
		for range n {
			s, err := d.string3("AMF3 member name")
			if err != nil {
				return nil, err
			}
			t.sealed = append(t.sealed, s)
		}
		d.traits3 = append(d.traits3, t)
	}
	// Traits can be reused by reference, so the sealed count must be
	// checked against the input again for every object.
	if err := d.checkCount(uint64(len(t.sealed)), 1, "AMF3 sealed value"); err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	o := &Object{Class: t.class}
	if len(t.sealed) > 0 {
		o.Pairs = make([]Pair, 0, initialCap(uint64(len(t.sealed))))
	}
	d.objs3 = append(d.objs3, o) // before the members, so they can refer to o
	for _, name := range t.sealed {
		v, err := d.value3()
		if err != nil {
			return nil, err
		}
		o.Pairs = append(o.Pairs, Pair{Key: name, Value: v})
	}
	if t.dynamic {
		for {
			k, err := d.string3("AMF3 dynamic member name")
			if err != nil {
				return nil, err
			}
			if k == "" {
				break
			}
			v, err := d.value3()
			if err != nil {
				return nil, err
			}
			o.Pairs = append(o.Pairs, Pair{Key: k, Value: v})
		}
	}
	return o, nil
}

// numVector3 decodes Vector.<int> (0x0d), Vector.<uint> (0x0e) and
// Vector.<Number> (0x0f) into an Array of float64.
func (d *Decoder) numVector3(m byte) (any, error) {
	u, err := d.u29("AMF3 vector")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 vector")
	}
	if _, err := d.u8("AMF3 vector fixed flag"); err != nil {
		return nil, err
	}
	size := uint64(4)
	if m == 0x0f {
		size = 8
	}
	n := uint64(u >> 1)
	p, err := d.take(n*size, "AMF3 vector items") // n < 2^28: no overflow
	if err != nil {
		return nil, err
	}
	// Counted as a container so that decoding and re-encoding (as an
	// Array) agree on depth.
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	a := make(Array, n)
	for i := range a {
		q := p[uint64(i)*size:]
		switch m {
		case 0x0d:
			a[i] = float64(int32(binary.BigEndian.Uint32(q)))
		case 0x0e:
			a[i] = float64(binary.BigEndian.Uint32(q))
		default:
			a[i] = math.Float64frombits(binary.BigEndian.Uint64(q))
		}
	}
	d.objs3 = append(d.objs3, a)
	return a, nil
}

// objVector3 decodes Vector.<T> for object types into an Array.
func (d *Decoder) objVector3() (any, error) {
	u, err := d.u29("AMF3 object vector")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 object vector")
	}
	if _, err := d.u8("AMF3 vector fixed flag"); err != nil {
		return nil, err
	}
	if _, err := d.string3("AMF3 vector type name"); err != nil {
		return nil, err
	}
	n := uint64(u >> 1)
	if err := d.checkCount(n, 1, "AMF3 object vector"); err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	b := &building{kind: kindArray, items: make(Array, 0, initialCap(n))}
	i := len(d.objs3)
	d.objs3 = append(d.objs3, b)
	return d.denseItems3(b, i, n)
}

// denseItems3 reads n AMF3 values into b's dense part, then puts the
// finished value in reference-table slot i (where b stood while it was
// being built, for self-references).
func (d *Decoder) denseItems3(b *building, i int, n uint64) (any, error) {
	for range n {
		v, err := d.value3()
		if err != nil {
			return nil, err
		}
		b.items = append(b.items, v)
	}
	v := b.value()
	d.objs3[i] = v
	return v, nil
}

// dictionary3 decodes a Dictionary into an ECMAArray. Keys may be any value;
// they are rendered as strings (see dictKey).
func (d *Decoder) dictionary3() (any, error) {
	u, err := d.u29("AMF3 dictionary")
	if err != nil {
		return nil, err
	}
	if u&1 == 0 {
		return d.objRef3(u>>1, "AMF3 dictionary")
	}
	if _, err := d.u8("AMF3 dictionary weak-keys flag"); err != nil {
		return nil, err
	}
	n := uint64(u >> 1)
	if err := d.checkCount(n, 2, "AMF3 dictionary"); err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	b := &building{kind: kindECMA, pairs: make([]Pair, 0, initialCap(n))}
	i := len(d.objs3)
	d.objs3 = append(d.objs3, b)
	for range n {
		k, err := d.value3()
		if err != nil {
			return nil, err
		}
		v, err := d.value3()
		if err != nil {
			return nil, err
		}
		b.pairs = append(b.pairs, Pair{Key: dictKey(k), Value: v})
	}
	v := b.value()
	d.objs3[i] = v
	return v, nil
}

// dictKey renders a dictionary key. Scalars use fmt.Sprint (null and
// undefined as ActionScript spells them); containers and byte arrays get a
// fixed tag instead, because printing them could cost far more than the
// reference that put them there (a shared value may be used as the key of
// every entry).
func dictKey(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case XML:
		return string(k)
	case nil:
		return "null"
	case Undefined:
		return "undefined"
	case float64, bool:
		return fmt.Sprint(k)
	case time.Time:
		return k.Format(time.RFC3339Nano)
	case *Object:
		if k.Class != "" && len(k.Class) <= 64 {
			return "[object " + k.Class + "]"
		}
		return "[object Object]"
	case ByteArray:
		return "[object ByteArray]"
	case ECMAArray:
		return "[object Dictionary]"
	}
	return "[object Array]" // Array, AMF3Array
}
