package amf

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the decoders. Besides never panicking,
// whatever decodes must re-encode, decode again to an equal value (see
// normalize), and re-encode to the same bytes a second time.
//
// AppendAMF0 may refuse a decoded value only in these documented cases,
// which the target checks by walking the value (reencodeLimits):
//   - ErrDepth: more than 64 nested containers once references are
//     expanded, including cycles (the writer emits no references);
//   - ErrTooLarge: an AMF0 object key, class name or ECMA key over 65535
//     bytes, possible when an AMF3 object or dictionary is written as AMF0;
//   - ErrUnsupported: an empty key in an associative array written as AMF3
//     (a dictionary with an "" key inside an AMF3 array), where "" is the
//     terminator.
//
// Values whose expansion would exceed a size budget are skipped: references
// let a few bytes stand for a structure exponentially larger once written
// out without references.
func FuzzDecode(f *testing.F) {
	for _, h := range []string{
		// §4.4
		"00 3f f0 00 00 00 00 00 00",
		"00 40 08 00 00 00 00 00 00",
		"02 00 03 61 70 70",
		"03 00 01 61 00 3f f0 00 00 00 00 00 00 00 00 09",
		"08 00 00 00 01 00 01 61 01 01 00 00 09",
		"0a 00 00 00 02 05 06",
		"0b 00 00 00 00 00 00 00 00 00 00",
		"11 06 05 68 69",
		"11 04 05",
		"11 0a 0b 01 03 61 04 01 01",
		"11 0c 07 01 02 03",
		// §5.6 setPeerInfo and §5.4 close
		`02 00 0b "setPeerInfo" 00 00 00 00 00 00 00 00 00 05 02 00 12 "169.254.8.30:39046"`,
		`02 00 05 "close" 00 00 00 00 00 00 00 00 00 05`,
		// references, self references, traits reuse
		"03 00 04 73 65 6c 66 07 00 00 00 00 09",
		"11 0a 0b 01 03 61 0a 00 01",
		"11 09 05 01 04 01 09 00",
		"11 0a 13 03 43 03 78 04 01 11 0a 01 04 02 11 06 00 11 0a 00",
		"11 11 09 00 04 01 06 03 61 06 03 6b 03 01 02 0a 0b 01 01 01",
		"11 09 01 03 6b 11 03 00 06 01 04 01 01",
	} {
		f.Add(hx(f, h))
	}
	for _, b := range validMessages(f) {
		f.Add(b)
	}
	for _, c := range refusals(f) {
		if len(c.in) < 1000 { // a 70 kB seed would slow minimization down
			f.Add(c.in)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Go's fuzzer has no per-input timeout, so a hang would only stall
		// the workers; crashing the worker makes it record the input.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("input % x took over 10s", data))
		})
		defer watchdog.Stop()
		if v, n, err := DecodeAMF3(data); err == nil {
			if n > len(data) {
				t.Fatalf("DecodeAMF3 consumed %d of %d bytes", n, len(data))
			}
			checkReencode(t, data, v, true)
		}
		d := NewDecoder(data)
		for {
			v, err := d.Next()
			if err != nil {
				if d.Remaining() < 0 || d.Remaining() > len(data) {
					t.Fatalf("Remaining = %d", d.Remaining())
				}
				return
			}
			checkReencode(t, data, v, false)
		}
	})
}

// checkReencode encodes v (with AppendAMF3 if amf3, else AppendAMF0),
// decodes the result and compares.
func checkReencode(t *testing.T, data []byte, v any, amf3 bool) {
	lim := reencodeLimits{budget: 1 << 18}
	lim.walk(v, 0, amf3)
	if lim.budget < 0 {
		return
	}
	enc := AppendAMF0
	dec := func(b []byte) (any, error) {
		d := NewDecoder(b)
		v, err := d.Next()
		if err == nil && d.Remaining() != 0 {
			t.Fatalf("%d bytes left after re-decoding % x", d.Remaining(), b)
		}
		return v, err
	}
	if amf3 {
		enc = AppendAMF3
		dec = func(b []byte) (any, error) {
			v, n, err := DecodeAMF3(b)
			if err == nil && n != len(b) {
				t.Fatalf("%d bytes left after re-decoding % x", len(b)-n, b)
			}
			return v, err
		}
	}
	b, err := enc(nil, v)
	switch {
	case err == nil && (lim.deep || lim.longKey || lim.emptyKey):
		t.Fatalf("input % x: encoded a value it should refuse (limits %+v)", data, lim)
	case err == nil:
	case errors.Is(err, ErrDepth) && lim.deep,
		errors.Is(err, ErrTooLarge) && lim.longKey,
		errors.Is(err, ErrUnsupported) && lim.emptyKey:
		return
	default:
		t.Fatalf("input % x: re-encoding: %v (limits %+v)", data, err, lim)
	}
	v2, err := dec(b)
	if err != nil {
		t.Fatalf("input % x: decoding re-encoded % x: %v", data, b, err)
	}
	if n1, n2 := normalize(v), normalize(v2); !reflect.DeepEqual(n1, n2) {
		t.Fatalf("input % x: round trip differs:\n%s\n% x\n%s", data, short(n1), b, short(n2))
	}
	b2, err := enc(nil, v2)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("input % x: second encoding differs: %v\n% x\n% x", data, err, b, b2)
	}
}

// reencodeLimits walks a value the way the encoders do (stopping at the same
// depth) to tell which documented refusals apply and how big the output is.
type reencodeLimits struct {
	budget   int // decremented per node and byte; negative = too big to try
	deep     bool
	longKey  bool
	emptyKey bool
}

func (l *reencodeLimits) keys(ps []Pair, amf3, assoc bool) {
	for _, p := range ps {
		l.budget -= len(p.Key)
		if !amf3 && len(p.Key) > 65535 {
			l.longKey = true
		}
		if amf3 && assoc && p.Key == "" {
			l.emptyKey = true
		}
	}
}

func (l *reencodeLimits) walk(v any, depth int, amf3 bool) {
	l.budget--
	if l.budget < 0 {
		return
	}
	var children []any
	var pairs []Pair
	switch v := v.(type) {
	case string:
		l.budget -= len(v)
		return
	case XML:
		l.budget -= len(v)
		return
	case ByteArray:
		l.budget -= len(v)
		return
	case *Object:
		if !amf3 && len(v.Class) > 65535 {
			l.longKey = true
		}
		l.budget -= len(v.Class)
		l.keys(v.Pairs, amf3, false)
		pairs = v.Pairs
	case ECMAArray:
		l.keys(v, amf3, true)
		pairs = v
	case Array:
		children = v
	case AMF3Array:
		amf3 = true
		l.keys(v.Assoc, amf3, true)
		pairs, children = v.Assoc, v.Dense
	default:
		return
	}
	if depth >= maxDepth {
		l.deep = true
		return
	}
	// Stop as soon as the budget is spent: a node may list many references
	// to one large value.
	for _, p := range pairs {
		if l.budget < 0 {
			return
		}
		l.walk(p.Value, depth+1, amf3)
	}
	for _, c := range children {
		if l.budget < 0 {
			return
		}
		l.walk(c, depth+1, amf3)
	}
}

// short formats a normalized value (a tree, so formatting is linear in the
// budget) for a failure message, cut to a readable length.
func short(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

// refusal is a decodable input that AppendAMF0 must refuse, one for each
// documented case.
type refusal struct {
	name string
	in   []byte
	err  error
}

func refusals(t testing.TB) []refusal {
	longKey, err := AppendAMF3([]byte{0x11}, NewObject(strings.Repeat("k", 70000), nil))
	if err != nil {
		t.Fatal(err)
	}
	return []refusal{
		{"cycle", hx(t, "11 0a 0b 01 03 61 0a 00 01"), ErrDepth},
		// 40 nested objects, then a value holding two references to the
		// 30th: fine when decoded, 70 deep when written out.
		{"deep through references", hx(t, nest(40, "03 00 01 61 ", "0a 00 00 00 02 07 00 1d 07 00 1d", " 00 00 09")), ErrDepth},
		{"long AMF3 key written as AMF0", longKey, ErrTooLarge},
		{"empty dictionary key in an AMF3 array", hx(t, "11 09 01 03 6b 11 03 00 06 01 04 01 01"), ErrUnsupported},
	}
}

// TestRefusals checks that each documented refusal happens and is
// recognised by reencodeLimits, so the fuzz target's tolerance is not wider
// than documented.
func TestRefusals(t *testing.T) {
	for _, c := range refusals(t) {
		vals, err := DecodeAll(c.in)
		if err != nil || len(vals) != 1 {
			t.Fatalf("%s: %d values, %v", c.name, len(vals), err)
		}
		lim := reencodeLimits{budget: 1 << 18}
		lim.walk(vals[0], 0, false)
		_, err = AppendAMF0(nil, vals[0])
		if !errors.Is(err, c.err) {
			t.Errorf("%s: AppendAMF0 error %v, want %v", c.name, err, c.err)
		}
		flagged := map[error]bool{ErrDepth: lim.deep, ErrTooLarge: lim.longKey, ErrUnsupported: lim.emptyKey}
		if !flagged[c.err] || lim.budget < 0 {
			t.Errorf("%s: limits %+v", c.name, lim)
		}
	}
}
