package wire

// Option is one element of an RTMFP option sequence: a VLU length L, and
// when L > 0 a VLU type and L-len(type) value bytes. L = 0 is the marker that
// ends an option list.
type Option struct {
	Type  uint64
	Value []byte
}

// AppendOption appends one option (never a marker).
func AppendOption(b []byte, typ uint64, value []byte) []byte {
	b = AppendVLU(b, uint64(VLULen(typ)+len(value)))
	b = AppendVLU(b, typ)
	return append(b, value...)
}

// AppendOptionVLU appends an option whose value is a single VLU.
func AppendOptionVLU(b []byte, typ, v uint64) []byte {
	b = AppendVLU(b, uint64(VLULen(typ)+VLULen(v)))
	b = AppendVLU(b, typ)
	return AppendVLU(b, v)
}

// OptionLen is the encoded length of an option.
func OptionLen(typ uint64, valueLen int) int {
	l := VLULen(typ) + valueLen
	return VLULen(uint64(l)) + l
}

// ParseOption decodes one option at the start of b. marker reports the L = 0
// end marker (opt is then empty). n is the number of bytes consumed.
func ParseOption(b []byte) (opt Option, marker bool, n int, err error) {
	l, ln, err := ParseVLU(b)
	if err != nil {
		return Option{}, false, 0, err
	}
	if l == 0 {
		return Option{}, true, ln, nil
	}
	if l > uint64(len(b)-ln) {
		return Option{}, false, 0, ErrOptionLength
	}
	body := b[ln : ln+int(l)]
	typ, tn, err := ParseVLU(body)
	if err != nil {
		return Option{}, false, 0, ErrOptionLength
	}
	return Option{Type: typ, Value: body[tn:len(body):len(body)]}, false, ln + int(l), nil
}

// ParseOptionSequence decodes options until the end of b or the first
// marker. It returns the options before the marker and the offset of the
// marker (len(b) if there is none). This is the form of certificates, EPDs
// and keying components, which Flash does not terminate.
func ParseOptionSequence(b []byte) (opts []Option, markerAt int, err error) {
	off := 0
	for off < len(b) {
		opt, marker, n, err := ParseOption(b[off:])
		if err != nil {
			return nil, 0, err
		}
		if marker {
			return opts, off, nil
		}
		opts = append(opts, opt)
		off += n
	}
	return opts, len(b), nil
}

// WalkOptionList calls fn for each option of a marker-terminated option list
// at the start of b and returns the bytes consumed, marker included. It does
// not allocate, which matters on the user-data path.
func WalkOptionList(b []byte, fn func(Option)) (n int, err error) {
	off := 0
	for {
		if off >= len(b) {
			return 0, ErrNoMarker
		}
		opt, marker, m, err := ParseOption(b[off:])
		if err != nil {
			return 0, err
		}
		off += m
		if marker {
			return off, nil
		}
		if fn != nil {
			fn(opt)
		}
	}
}

// FindOption returns the first option of type typ in an option sequence.
func FindOption(b []byte, typ uint64) ([]byte, bool) {
	off := 0
	for off < len(b) {
		opt, marker, n, err := ParseOption(b[off:])
		if err != nil || marker {
			return nil, false
		}
		if opt.Type == typ {
			return opt.Value, true
		}
		off += n
	}
	return nil, false
}
