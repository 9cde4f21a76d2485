package wire

// MaxVLULen is the longest VLU a uint64 needs (ceil(64/7)). Decoders accept
// redundant leading 0x80 groups, as rtmfp-cpp does, but only up to this many
// bytes, so a hostile run of 0x80 bytes cannot make a parser loop for long.
const MaxVLULen = 10

// AppendVLU appends the minimal big-endian base-128 encoding of v.
func AppendVLU(b []byte, v uint64) []byte {
	var tmp [MaxVLULen]byte
	i := len(tmp) - 1
	tmp[i] = byte(v & 0x7f)
	v >>= 7
	for v != 0 {
		i--
		tmp[i] = byte(v&0x7f) | 0x80
		v >>= 7
	}
	return append(b, tmp[i:]...)
}

// VLULen is the length of AppendVLU's encoding of v.
func VLULen(v uint64) int {
	n := 1
	for v >>= 7; v != 0; v >>= 7 {
		n++
	}
	return n
}

// ParseVLU decodes a VLU at the start of b and returns it with the number of
// bytes consumed.
func ParseVLU(b []byte) (v uint64, n int, err error) {
	for n < len(b) {
		c := b[n]
		n++
		if v > (1<<64-1)>>7 {
			return 0, n, ErrVLUOverflow
		}
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 == 0 {
			return v, n, nil
		}
		if n >= MaxVLULen+4 {
			// Redundant leading zero groups are legal but unbounded ones
			// are an attack: cap the total run.
			return 0, n, ErrVLUOverflow
		}
	}
	return 0, n, ErrShort
}

// Reader walks a byte slice, decoding VLUs and fields. The first error
// sticks; later reads return zero values, so a parser can read a whole
// structure and check Err once.
type Reader struct {
	B   []byte
	Err error
}

// VLU reads one VLU.
func (r *Reader) VLU() uint64 {
	if r.Err != nil {
		return 0
	}
	v, n, err := ParseVLU(r.B)
	if err != nil {
		r.Err = err
		r.B = nil
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Bytes reads n raw bytes (aliasing the input).
func (r *Reader) Bytes(n uint64) []byte {
	if r.Err != nil {
		return nil
	}
	if n > uint64(len(r.B)) {
		r.Err = ErrShort
		r.B = nil
		return nil
	}
	v := r.B[:n:n]
	r.B = r.B[n:]
	return v
}

// Field reads a VLU length followed by that many bytes.
func (r *Reader) Field() []byte { return r.Bytes(r.VLU()) }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	b := r.Bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// U16 reads a big-endian 16-bit integer.
func (r *Reader) U16() uint16 {
	b := r.Bytes(2)
	if b == nil {
		return 0
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// U32 reads a big-endian 32-bit integer.
func (r *Reader) U32() uint32 {
	b := r.Bytes(4)
	if b == nil {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Rest returns what is left and empties the reader.
func (r *Reader) Rest() []byte {
	if r.Err != nil {
		return nil
	}
	v := r.B
	r.B = nil
	return v
}

// AppendField appends a VLU length and the bytes.
func AppendField(b, field []byte) []byte {
	b = AppendVLU(b, uint64(len(field)))
	return append(b, field...)
}
