package amf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// decodeOne decodes b as exactly one AMF0 value.
func decodeOne(t *testing.T, b []byte) any {
	t.Helper()
	vals, err := DecodeAll(b)
	if err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	if len(vals) != 1 {
		t.Fatalf("decode % x: %d values, want 1", b, len(vals))
	}
	return vals[0]
}

// TestSpecExamples checks every hex example of the profile §4.4 in both
// directions.
func TestSpecExamples(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		amf3 bool
		want any // decoded value
		enc  any // value to encode (if different from want)
	}{
		{"number 1", "00 3f f0 00 00 00 00 00 00", false, 1.0, nil},
		{"number 3", "00 40 08 00 00 00 00 00 00", false, 3.0, nil},
		{"string app", "02 00 03 61 70 70", false, "app", nil},
		{"object a:1", "03 00 01 61 00 3f f0 00 00 00 00 00 00 00 00 09", false, NewObject("a", 1.0), nil},
		{"ecma a:true", "08 00 00 00 01 00 01 61 01 01 00 00 09", false, ECMAArray{{"a", true}}, nil},
		{"strict null undefined", "0a 00 00 00 02 05 06", false, Array{nil, Undefined{}}, nil},
		{"date epoch", "0b 00 00 00 00 00 00 00 00 00 00", false, time.Unix(0, 0).UTC(), nil},
		{"amf3 string hi", "06 05 68 69", true, "hi", nil},
		{"amf3 integer 5", "04 05", true, 5.0, 5},
		{"amf3 object a:1", "0a 0b 01 03 61 04 01 01", true, NewObject("a", 1.0), NewObject("a", 1)},
		{"bytearray switch", "11 0c 07 01 02 03", false, ByteArray{1, 2, 3}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hx(t, tc.hex)
			var got any
			if tc.amf3 {
				v, n, err := DecodeAMF3(b)
				if err != nil || n != len(b) {
					t.Fatalf("DecodeAMF3 = %v, %d, %v", v, n, err)
				}
				got = v
			} else {
				got = decodeOne(t, b)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded %#v, want %#v", got, tc.want)
			}
			enc := tc.enc
			if enc == nil {
				enc = tc.want
			}
			var out []byte
			var err error
			if tc.amf3 {
				out, err = AppendAMF3(nil, enc)
			} else {
				out, err = AppendAMF0(nil, enc)
			}
			if err != nil || !bytes.Equal(out, b) {
				t.Errorf("encoded % x, %v; want % x", out, err, b)
			}
		})
	}
}

func TestU29(t *testing.T) {
	tests := []struct {
		v   int32
		hex string
	}{
		{5, "05"}, {300, "82 2c"}, {0x200000, "80 c0 80 00"}, // §4.2
		{0, "00"}, {0x7f, "7f"}, {0x80, "81 00"}, {0x3fff, "ff 7f"}, {0x4000, "81 80 00"},
		{0x1fffff, "ff ff 7f"}, {maxInt29, "bf ff ff ff"},
		{-1, "ff ff ff ff"}, {minInt29, "c0 80 80 00"},
	}
	for _, tc := range tests {
		want := append([]byte{0x04}, hx(t, tc.hex)...)
		got, err := AppendAMF3(nil, tc.v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encode %d = % x, %v; want % x", tc.v, got, err, want)
		}
		v, n, err := DecodeAMF3(want)
		if err != nil || n != len(want) || v != float64(tc.v) {
			t.Errorf("decode % x = %v, %d, %v; want %d", want, v, n, err, tc.v)
		}
	}
	// Non-canonical but valid: 5 in two bytes.
	if v, _, err := DecodeAMF3(hx(t, "04 80 05")); err != nil || v != 5.0 {
		t.Errorf("non-canonical U29 = %v, %v", v, err)
	}
	// Out of 29-bit range, and every float64, go as doubles.
	for _, v := range []any{maxInt29 + 1, minInt29 - 1, int64(1) << 40, uint64(math.MaxUint64), 5.0, float32(2)} {
		b, err := AppendAMF3(nil, v)
		if err != nil || len(b) != 9 || b[0] != 0x05 {
			t.Errorf("encode %v = % x, %v; want a double", v, b, err)
		}
		f, _ := toFloat(v)
		if got, _, err := DecodeAMF3(b); err != nil || got != f {
			t.Errorf("round trip %v = %v, %v", v, got, err)
		}
	}
}

// TestCommands uses the command byte strings of the profile §5.3, §5.4 and
// §5.6 (TC header removed): decode, then re-encode to the same bytes.
func TestCommands(t *testing.T) {
	key := "0123456789abcdef01234567-89abcdef0123"
	tests := []struct {
		name string
		hex  string
		want []any
	}{
		{"connect §5.3", `02 00 07 63 6f 6e 6e 65 63 74 00 3f f0 00 00 00 00 00 00
			03 00 03 61 70 70 02 00 25 "` + key + `"
			00 08 66 6c 61 73 68 56 65 72 02 00 10 "WIN" 20 "11,2,202,235"
			00 05 74 63 55 72 6c 02 00 3d "rtmfp://rdv.example.net/` + key + `"
			00 0e 6f 62 6a 65 63 74 45 6e 63 6f 64 69 6e 67 00 40 08 00 00 00 00 00 00
			00 00 09`,
			[]any{"connect", 1.0, NewObject("app", key, "flashVer", "WIN 11,2,202,235",
				"tcUrl", "rtmfp://rdv.example.net/"+key, "objectEncoding", 3.0)}},
		{"_result §5.4", `02 00 07 5f 72 65 73 75 6c 74 00 3f f0 00 00 00 00 00 00 05
			03 00 05 6c 65 76 65 6c 02 00 06 73 74 61 74 75 73
			00 04 63 6f 64 65 02 00 1d 4e 65 74 43 6f 6e 6e 65 63 74 69 6f 6e 2e
			43 6f 6e 6e 65 63 74 2e 53 75 63 63 65 73 73
			00 0b 64 65 73 63 72 69 70 74 69 6f 6e 02 00 14 43 6f 6e 6e 65 63 74 69
			6f 6e 20 73 75 63 63 65 65 64 65 64
			00 0e 6f 62 6a 65 63 74 45 6e 63 6f 64 69 6e 67 00 40 08 00 00 00 00 00 00
			00 00 09`,
			[]any{"_result", 1.0, nil, NewObject("level", "status", "code", "NetConnection.Connect.Success",
				"description", "Connection succeeded", "objectEncoding", 3.0)}},
		{"_error §5.4", `02 00 06 5f 65 72 72 6f 72 00 3f f0 00 00 00 00 00 00 05
			03 00 05 "level" 02 00 05 "error" 00 04 "code" 02 00 1e "NetConnection.Connect.Rejected"
			00 0b "description" 02 00 15 "invalid" 20 "developer" 20 "key" 00 00 09`,
			[]any{"_error", 1.0, nil, NewObject("level", "error", "code", "NetConnection.Connect.Rejected",
				"description", "invalid developer key")}},
		{"close §5.4", `02 00 05 63 6c 6f 73 65 00 00 00 00 00 00 00 00 00 05`,
			[]any{"close", 0.0, nil}},
		{"setPeerInfo §5.6", `02 00 0b 73 65 74 50 65 65 72 49 6e 66 6f
			00 00 00 00 00 00 00 00 00 05
			02 00 12 31 36 39 2e 32 35 34 2e 38 2e 33 30 3a 33 39 30 34 36
			02 00 14 31 39 32 2e 31 36 38 2e 31 37 38 2e 32 31 3a 33 39 30 34 36`,
			[]any{"setPeerInfo", 0.0, nil, "169.254.8.30:39046", "192.168.178.21:39046"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hx(t, tc.hex)
			got, err := DecodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded %#v\nwant %#v", got, tc.want)
			}
			var out []byte
			for _, v := range tc.want {
				if out, err = AppendAMF0(out, v); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, b) {
				t.Errorf("encoded % x\nwant    % x", out, b)
			}
		})
	}
}

// TestCaptures decodes real Flash Player 11.7 messages exactly and checks
// that re-encoding gives the same bytes.
func TestCaptures(t *testing.T) {
	bodies := loadCaptures(t)
	connect := &Object{Pairs: []Pair{
		{"app", ""},
		{"flashVer", "WIN 11,7,700,202"},
		{"swfUrl", Undefined{}},
		{"tcUrl", "rtmfp://192.168.137.183/"},
		{"fpad", false},
		{"capabilities", 235.0},
		{"audioCodecs", 3575.0},
		{"videoCodecs", 252.0},
		{"videoFunction", 1.0},
		{"pageUrl", Undefined{}},
		{"objectEncoding", 3.0},
	}}
	result := &Object{Pairs: []Pair{
		{"objectEncoding", 3.0},
		{"code", "NetConnection.Connect.Success"},
		{"data", nil},
		{"description", "Connection succeeded"},
		{"level", "status"},
	}}
	want := map[string][]any{
		"fp117_p5_plain": {"connect", 1.0, connect},
		"fp117_p6_plain": {"_result", 1.0, nil, result},
		"fp117_p8_plain": {"setPeerInfo", 0.0, nil, "192.168.137.1:55655", "192.168.202.99:55655"},
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want[name]) {
				t.Fatalf("decoded %#v\nwant %#v", got, want[name])
			}
			var out []byte
			for _, v := range got {
				if out, err = AppendAMF0(out, v); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, body) {
				t.Errorf("re-encoded % x\nwant        % x", out, body)
			}
		})
	}
	// What a server reads from connect.
	o := want["fp117_p5_plain"][2].(*Object)
	if s, ok := o.GetString("tcUrl"); !ok || s != "rtmfp://192.168.137.183/" {
		t.Errorf("tcUrl = %q, %v", s, ok)
	}
	if n, ok := o.GetNumber("objectEncoding"); !ok || n != 3 {
		t.Errorf("objectEncoding = %v, %v", n, ok)
	}
	if _, ok := o.GetString("swfUrl"); ok {
		t.Error("swfUrl (undefined) read as a string")
	}
}

func TestLongStrings(t *testing.T) {
	for _, n := range []int{0, 65535, 65536, 200000} {
		s := strings.Repeat("x", n)
		b, err := AppendAMF0(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		wantMarker, hdr := byte(0x02), 3
		if n > 65535 {
			wantMarker, hdr = 0x0c, 5
		}
		if b[0] != wantMarker || len(b) != hdr+n {
			t.Errorf("len %d: marker %02x, %d bytes", n, b[0], len(b))
		}
		if got := decodeOne(t, b); got != s {
			t.Errorf("len %d: round trip differs", n)
		}
		b3, err := AppendAMF3(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if got, m, err := DecodeAMF3(b3); err != nil || m != len(b3) || got != s {
			t.Errorf("AMF3 len %d: %v, %d", n, err, m)
		}
	}
	// A long string with a short length is still accepted.
	if got := decodeOne(t, hx(t, `0c 00 00 00 02 "hi"`)); got != "hi" {
		t.Errorf("short long string = %v", got)
	}
	// XML uses a u32 length too.
	x := XML("<a>" + strings.Repeat("y", 70000) + "</a>")
	b, _ := AppendAMF0(nil, x)
	if b[0] != 0x0f || decodeOne(t, b) != x {
		t.Error("XML round trip")
	}
	// AMF0 keys and class names are limited to 65535 bytes.
	long := strings.Repeat("k", 65536)
	if _, err := AppendAMF0(nil, NewObject(long, 1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("long key: %v", err)
	}
	if _, err := AppendAMF0(nil, &Object{Class: long}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("long class: %v", err)
	}
}

// nest wraps inner n times in open...close.
func nest(n int, open, inner, close string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func TestDepthLimit(t *testing.T) {
	cases := []struct {
		name               string
		open, inner, close string
		amf3               bool
	}{
		{"AMF0 strict arrays", "0a 00 00 00 01 ", "05", "", false},
		{"AMF0 objects", "03 00 01 61 ", "05", " 00 00 09", false},
		{"AMF0 ECMA arrays", "08 00 00 00 01 00 01 61 ", "05", " 00 00 09", false},
		{"AMF0 typed objects", "10 00 01 43 00 01 61 ", "05", " 00 00 09", false},
		{"AMF3 arrays", "09 03 01 ", "01", "", true},
		{"AMF3 objects", "0a 0b 01 03 61 ", "01", " 01", true},
		{"AMF3 object vectors", "10 03 00 01 ", "01", "", true},
		{"AMF3 dictionaries", "11 03 00 01 ", "01", "", true},
		{"AMF3 int vectors", "09 03 01 ", "0d 03 00 00 00 00 07", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range []int{maxDepth, maxDepth + 1} {
				inner, open := c.inner, c.open
				if c.name == "AMF3 int vectors" {
					n-- // the vector itself is a container
				}
				b := hx(t, nest(n, open, inner, c.close))
				var v any
				var err error
				if c.amf3 {
					v, _, err = DecodeAMF3(b)
					if err == nil {
						// The same value switched from AMF0 has the same depth.
						if _, err2 := DecodeAll(append([]byte{0x11}, b...)); err2 != nil {
							t.Errorf("switched: %v", err2)
						}
					}
				} else {
					v, err = DecodeAll(b)
					if err == nil {
						v = v.([]any)[0]
					}
				}
				if (n+boolInt(c.name == "AMF3 int vectors") > maxDepth) != errors.Is(err, ErrDepth) {
					t.Fatalf("depth %d: err = %v", n, err)
				}
				if err != nil {
					continue
				}
				// The encoder writes exactly what the decoder accepts.
				enc, err := AppendAMF0(nil, v)
				if err != nil {
					t.Fatalf("re-encode depth %d: %v", n, err)
				}
				if _, err := DecodeAll(enc); err != nil {
					t.Fatalf("decode re-encoded depth %d: %v", n, err)
				}
			}
		})
	}
	// The encoder refuses what the decoder would refuse.
	var v any = 1.0
	for range maxDepth + 1 {
		v = Array{v}
	}
	if _, err := AppendAMF0(nil, v); !errors.Is(err, ErrDepth) {
		t.Errorf("AppendAMF0 of 65 nested arrays: %v", err)
	}
	if _, err := AppendAMF3(nil, v); !errors.Is(err, ErrDepth) {
		t.Errorf("AppendAMF3 of 65 nested arrays: %v", err)
	}
	// A cycle fails instead of recursing forever.
	o := NewObject("a", 1)
	o.Set("self", o)
	if _, err := AppendAMF0(nil, o); !errors.Is(err, ErrDepth) {
		t.Errorf("AppendAMF0 of a cycle: %v", err)
	}
	if _, err := AppendAMF3(nil, o); !errors.Is(err, ErrDepth) {
		t.Errorf("AppendAMF3 of a cycle: %v", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// validMessages are complete, valid AMF0 sequences covering every decoder
// path, used for the truncation test.
func validMessages(t testing.TB) map[string][]byte {
	m := map[string][]byte{}
	for name, b := range loadCaptures(t) {
		m[name] = b
	}
	m["amf3 mix"] = hx(t, `11 0a 0b 01 03 61 04 01 01
		11 09 05 03 6b 06 03 78 01 04 7f 05 3f f0 00 00 00 00 00 00
		11 0a 23 03 43 03 78 03 79 06 00 08 01 00 00 00 00 00 00 00 00
		11 0a 05 02 0a 02
		11 0d 05 00 ff ff ff ff 00 00 00 01
		11 0e 03 01 ff ff ff ff
		11 0f 03 00 3f f0 00 00 00 00 00 00
		11 10 05 00 03 43 06 00 01
		11 11 05 00 04 01 06 03 76 06 03 6b 03
		11 07 07 3c 61 2f 11 0b 00 11 0c 05 ab cd 11 0c 02`)
	m["amf0 mix"] = hx(t, `0b 00 00 00 00 00 00 00 00 00 00
		0f 00 00 00 02 "<a"
		10 00 01 43 00 01 61 07 00 00 00 00 09
		0c 00 00 00 02 "hi"
		0d 0a 00 00 00 01 07 00 01 01 01`)
	return m
}

// TestTruncated cuts valid messages at every length: no panic, and an error
// unless the cut falls between two values.
func TestTruncated(t *testing.T) {
	for name, msg := range validMessages(t) {
		t.Run(name, func(t *testing.T) {
			// Value boundaries of the full message.
			bound := map[int]int{0: 0}
			d := NewDecoder(msg)
			for k := 1; ; k++ {
				if _, err := d.Next(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("full message: %v", err)
				}
				bound[len(msg)-d.Remaining()] = k
			}
			if len(bound) < 2 {
				t.Fatal("no values")
			}
			for n := 0; n < len(msg); n++ {
				vals, err := DecodeAll(msg[:n])
				k, atBoundary := bound[n]
				switch {
				case atBoundary && (err != nil || len(vals) != k):
					t.Errorf("prefix %d: %d values, %v; want %d values", n, len(vals), err, k)
				case !atBoundary && !errors.Is(err, ErrTruncated):
					t.Errorf("prefix %d: err = %v, want ErrTruncated", n, err)
				}
			}
		})
	}
	// A bare AMF3 value cut anywhere is truncated.
	full := hx(t, "0a 0b 01 03 61 09 05 01 06 03 78 0c 03 ff 01")
	for n := 0; n < len(full); n++ {
		if _, _, err := DecodeAMF3(full[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("AMF3 prefix %d: %v", n, err)
		}
	}
}

// TestHugeCounts declares enormous counts and lengths in tiny inputs: each
// must fail fast with ErrTruncated and without allocating for the count.
func TestHugeCounts(t *testing.T) {
	inputs := []string{
		"0a ff ff ff ff 05",             // strict array
		"08 ff ff ff ff 00 01 61 05",    // ECMA array (count ignored; no end)
		"02 ff ff 61",                   // string
		"0c ff ff ff ff 61",             // long string
		"0f ff ff ff ff 61",             // XML
		"10 ff ff 61",                   // typed object class name
		"03 ff ff 61",                   // key
		"11 06 ff ff ff ff 61",          // AMF3 string
		"11 09 ff ff ff ff 01 01",       // AMF3 array dense count
		"11 0a ff ff ff fb 01 01",       // AMF3 object, 2^25-1 sealed members
		"11 0a 0b 01 03 61 0a 05 01",    // traits reference out of range
		"11 0c ff ff ff ff 00",          // ByteArray
		"11 0d ff ff ff ff 00 00",       // Vector.<int>
		"11 0f ff ff ff ff 00 00",       // Vector.<Number>
		"11 10 ff ff ff ff 00 01 01",    // Vector.<Object>
		"11 11 ff ff ff ff 00 01 01",    // Dictionary
		"11 07 ff ff ff ff 61",          // XMLDocument
		"0a 00 00 00 05 0a 00 00 00 04", // nested counts larger than the rest
	}
	for _, h := range inputs {
		b := hx(t, h)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		start := time.Now()
		_, err := DecodeAll(b)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&ms)
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrReference) {
			t.Errorf("% x: err = %v", b, err)
		}
		if alloc := ms.TotalAlloc - before; alloc > 64<<10 {
			t.Errorf("% x: allocated %d bytes", b, alloc)
		}
		if elapsed > 100*time.Millisecond {
			t.Errorf("% x: took %v", b, elapsed)
		}
	}
	// A sealed traits object reused by reference: the sealed count is checked
	// against the input again for each object.
	b := hx(t, "11 09 05 01 0a 13 01 03 61 05 0a 01")
	if _, err := DecodeAll(b); !errors.Is(err, ErrTruncated) {
		t.Errorf("traits reuse: %v", err)
	}
}

func TestReferences(t *testing.T) {
	// AMF0: an object referring to itself gets its own pointer.
	v := decodeOne(t, hx(t, "03 00 04 73 65 6c 66 07 00 00 00 00 09"))
	o := v.(*Object)
	if self, _ := o.Get("self"); self != o {
		t.Errorf("AMF0 self reference = %#v", self)
	}
	// AMF0: references span the values of one message; arrays are in the table.
	vals, err := DecodeAll(hx(t, "0a 00 00 00 01 00 3f f0 00 00 00 00 00 00 08 00 00 00 00 00 00 09 07 00 00 07 00 01"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vals, []any{Array{1.0}, ECMAArray{}, Array{1.0}, ECMAArray{}}) {
		t.Errorf("AMF0 refs = %#v", vals)
	}
	// AMF0: an array referring to itself sees the part decoded so far.
	if v := decodeOne(t, hx(t, "0a 00 00 00 02 05 07 00 00")); !reflect.DeepEqual(v, Array{nil, Array{nil}}) {
		t.Errorf("AMF0 self-referencing array = %#v", v)
	}
	// AMF3 object referring to itself.
	v, _, err = DecodeAMF3(hx(t, "0a 0b 01 03 61 0a 00 01"))
	if err != nil {
		t.Fatal(err)
	}
	o = v.(*Object)
	if a, _ := o.Get("a"); a != o {
		t.Errorf("AMF3 self reference = %#v", a)
	}
	// AMF3 array referring to itself.
	v, _, err = DecodeAMF3(hx(t, "09 05 01 04 01 09 00"))
	if err != nil || !reflect.DeepEqual(v, Array{1.0, Array{1.0}}) {
		t.Errorf("AMF3 self-referencing array = %#v, %v", v, err)
	}
	// AMF3 string, traits and object references; tables last for the
	// whole Decoder, across switched values.
	vals, err = DecodeAll(hx(t, `11 0a 13 03 43 03 78 04 01
		11 0a 01 04 02
		11 06 00
		11 06 02
		11 0a 00
		11 0c 03 aa 11 0c 04`))
	if err != nil {
		t.Fatal(err)
	}
	c1 := &Object{Class: "C", Pairs: []Pair{{"x", 1.0}}}
	c2 := &Object{Class: "C", Pairs: []Pair{{"x", 2.0}}}
	if !reflect.DeepEqual(vals, []any{c1, c2, "C", "x", c1, ByteArray{0xaa}, ByteArray{0xaa}}) {
		t.Errorf("AMF3 refs = %#v", vals)
	}
	if vals[0] != vals[4] {
		t.Error("object reference is not the same pointer")
	}
	// Out of range.
	for _, h := range []string{
		"07 00 00", "03 00 01 61 07 00 01 00 00 09",
		"11 06 00", "11 0a 00", "11 0a 01", "11 09 00", "11 08 00", "11 0c 00",
		"11 07 00", "11 0b 02", "11 0d 00", "11 10 00", "11 11 00",
		"11 0a 0b 02", // class name reference
		"11 0a 0b 01 02 01",
		"11 06 05 61 61 11 06 02", // string table holds one entry
	} {
		if _, err := DecodeAll(hx(t, h)); !errors.Is(err, ErrReference) {
			t.Errorf("%s: err = %v, want ErrReference", h, err)
		}
	}
	// The empty string is never added to the string table.
	if _, err := DecodeAll(hx(t, "11 06 01 11 06 00")); !errors.Is(err, ErrReference) {
		t.Errorf("empty string in table: %v", err)
	}
}

func TestAMF3Types(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want any
	}{
		{"undefined null false true", "09 09 01 00 01 02 03", Array{Undefined{}, nil, false, true}},
		{"negative integer", "04 ff ff ff ff", -1.0},
		{"double", "05 40 08 00 00 00 00 00 00", 3.0},
		{"empty string", "06 01", ""},
		{"xml", "0b 07 3c 61 2f", XML("<a/")},
		{"xmldoc", "07 07 3c 61 2f", XML("<a/")},
		{"date", "08 01 42 71 11 c3 f9 20 00 00", time.UnixMilli(1173000000000).UTC()},
		{"date NaN", "08 01 7f f8 00 00 00 00 00 00", time.Time{}},
		{"array with assoc", "09 05 03 6b 06 03 76 01 04 01 04 02",
			AMF3Array{Assoc: []Pair{{"k", "v"}}, Dense: Array{1.0, 2.0}}},
		{"assoc only", "09 01 03 6b 03 01", AMF3Array{Assoc: []Pair{{"k", true}}, Dense: Array{}}},
		{"empty array", "09 01 01", Array{}},
		{"sealed typed object", "0a 23 03 43 03 78 03 79 04 01 04 02",
			&Object{Class: "C", Pairs: []Pair{{"x", 1.0}, {"y", 2.0}}}},
		{"sealed and dynamic", "0a 1b 01 03 78 04 01 03 7a 04 03 01",
			&Object{Pairs: []Pair{{"x", 1.0}, {"z", 3.0}}}},
		{"empty bytearray", "0c 01", ByteArray{}},
		{"vector int", "0d 05 00 ff ff ff ff 00 00 00 07", Array{-1.0, 7.0}},
		{"vector uint", "0e 03 01 ff ff ff ff", Array{4294967295.0}},
		{"vector double", "0f 03 00 3f f0 00 00 00 00 00 00", Array{1.0}},
		{"vector object", "10 05 00 01 06 03 61 01", Array{"a", nil}},
		{"dictionary", "11 09 00 04 01 06 03 61 06 03 6b 03 01 02 0a 0b 01 01 01",
			ECMAArray{{"1", "a"}, {"k", true}, {"null", false}, {"[object Object]", nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hx(t, tc.hex)
			v, n, err := DecodeAMF3(b)
			if err != nil || n != len(b) {
				t.Fatalf("DecodeAMF3 = %#v, %d, %v", v, n, err)
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("got %#v, want %#v", v, tc.want)
			}
			// Round trip through the AMF3 writer.
			out, err := AppendAMF3(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			back, n, err := DecodeAMF3(out)
			if err != nil || n != len(out) {
				t.Fatalf("decode re-encoded % x: %v", out, err)
			}
			if !reflect.DeepEqual(normalize(back), normalize(v)) {
				t.Errorf("round trip %#v -> % x -> %#v", v, out, back)
			}
		})
	}
	// Externalizable objects cannot be decoded without their class.
	if _, _, err := DecodeAMF3(hx(t, `0a 07 43 "flex.messaging.io.ArrayCollection" 09 01 01`)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("externalizable: %v", err)
	}
	// Unknown markers.
	if _, _, err := DecodeAMF3([]byte{0x12}); !errors.Is(err, ErrMarker) {
		t.Errorf("AMF3 marker 0x12: %v", err)
	}
	for _, m := range []byte{0x04, 0x09, 0x0e, 0x12, 0xff} {
		if _, err := DecodeAll([]byte{m}); !errors.Is(err, ErrMarker) {
			t.Errorf("AMF0 marker %#x: %v", m, err)
		}
	}
}

func TestAMF3Writer(t *testing.T) {
	tests := []struct {
		name string
		v    any
		hex  string
	}{
		{"typed object", &Object{Class: "C", Pairs: []Pair{{"x", 1}}}, "0a 0b 03 43 03 78 04 01 01"},
		{"empty key goes sealed", &Object{Pairs: []Pair{{"", 1}, {"b", true}}}, "0a 23 01 01 03 62 04 01 03"},
		{"array", Array{"a", nil}, "09 05 01 06 03 61 01"},
		{"assoc array", AMF3Array{Assoc: []Pair{{"k", false}}, Dense: Array{Undefined{}}}, "09 03 03 6b 02 01 00"},
		{"ecma array", ECMAArray{{"k", false}}, "09 01 03 6b 02 01"},
		{"map sorted", map[string]any{"b": 2, "a": 1}, "0a 0b 01 03 61 04 01 03 62 04 02 01"},
		{"date", time.UnixMilli(1000), "08 01 40 8f 40 00 00 00 00 00"},
		{"xml", XML("<a/>"), "0b 09 3c 61 2f 3e"},
		{"nil object", (*Object)(nil), "01"},
		{"repeated strings stay inline", Array{"ab", "ab"}, "09 05 01 06 05 61 62 06 05 61 62"},
	}
	for _, tc := range tests {
		out, err := AppendAMF3(nil, tc.v)
		if want := hx(t, tc.hex); err != nil || !bytes.Equal(out, want) {
			t.Errorf("%s: % x, %v; want % x", tc.name, out, err, want)
		}
	}
	// AMF0 writes AMF3-only values behind the switch marker.
	out, err := AppendAMF0(nil, NewObject("a", AMF3Array{Assoc: []Pair{{"k", 1}}}))
	if want := hx(t, "03 00 01 61 11 09 01 03 6b 04 01 01 00 00 09"); err != nil || !bytes.Equal(out, want) {
		t.Errorf("switched AMF3Array: % x, %v", out, err)
	}
	// Typed AMF0 object, map, []any, ints, Unsupported.
	out, err = AppendAMF0(nil, []any{&Object{Class: "C"}, map[string]any{"z": uint8(1)}, Unsupported{}, int64(-2)})
	want := hx(t, `0a 00 00 00 04 10 00 01 43 00 00 09 03 00 01 7a 00 3f f0 00 00 00 00 00 00 00 00 09
		0d 00 c0 00 00 00 00 00 00 00`)
	if err != nil || !bytes.Equal(out, want) {
		t.Errorf("AMF0 conveniences: % x, %v", out, err)
	}
}

func TestEncodeErrors(t *testing.T) {
	pre := []byte{1, 2, 3}
	for _, v := range []any{struct{}{}, make(chan int), []int{1}, &Array{}, complex(1, 2)} {
		out, err := AppendAMF0(pre, v)
		if !errors.Is(err, ErrUnsupported) || !bytes.Equal(out, pre) {
			t.Errorf("AppendAMF0(%T) = % x, %v", v, out, err)
		}
		if _, err := AppendAMF3(nil, v); !errors.Is(err, ErrUnsupported) {
			t.Errorf("AppendAMF3(%T) = %v", v, err)
		}
	}
	// An unsupported value deep inside leaves b as it was.
	out, err := AppendAMF0(pre, NewObject("a", 1, "b", Array{struct{}{}}))
	if !errors.Is(err, ErrUnsupported) || !bytes.Equal(out, pre) {
		t.Errorf("nested unsupported: % x, %v", out, err)
	}
	if _, err := AppendAMF3(nil, Unsupported{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("AMF3 Unsupported: %v", err)
	}
	if _, err := AppendAMF3(nil, ECMAArray{{"", 1}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("AMF3 empty assoc key: %v", err)
	}
	if _, err := AppendAMF0(nil, AMF3Array{Assoc: []Pair{{"", 1}}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("AMF0 switched empty assoc key: %v", err)
	}
}

func TestDates(t *testing.T) {
	for _, tm := range []time.Time{
		time.Unix(0, 0).UTC(),
		time.UnixMilli(-1).UTC(),
		time.Date(2013, 5, 1, 12, 0, 0, 0, time.UTC),
		{},
	} {
		b, err := AppendAMF0(nil, tm)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeOne(t, b); !reflect.DeepEqual(got, tm) {
			t.Errorf("date %v round trip = %#v", tm, got)
		}
	}
	// Sub-millisecond precision and the zone are dropped.
	loc := time.FixedZone("X", 3600)
	got := decodeOne(t, mustAMF0(t, time.Date(2020, 1, 2, 3, 4, 5, 6789012, loc)))
	if want := time.Date(2020, 1, 2, 2, 4, 5, 6000000, time.UTC); !reflect.DeepEqual(got, want) {
		t.Errorf("date = %v, want %v", got, want)
	}
	// Invalid dates (NaN, out of ECMAScript range) decode to the zero time;
	// times outside that range encode as NaN.
	for _, h := range []string{"0b 7f f8 00 00 00 00 00 00 00 00", "0b 43 40 00 00 00 00 00 00 00 00", "0b ff f0 00 00 00 00 00 00 00 00"} {
		if got := decodeOne(t, hx(t, h)); !reflect.DeepEqual(got, time.Time{}) {
			t.Errorf("%s = %v", h, got)
		}
	}
	b := mustAMF0(t, time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC))
	if f := math.Float64frombits(uint64(b[1])<<56 | uint64(b[2])<<48 | uint64(b[3])<<40 | uint64(b[4])<<32 |
		uint64(b[5])<<24 | uint64(b[6])<<16 | uint64(b[7])<<8 | uint64(b[8])); !math.IsNaN(f) {
		t.Errorf("far date encoded as %v", f)
	}
	// The time zone field is ignored.
	if got := decodeOne(t, hx(t, "0b 00 00 00 00 00 00 00 00 ff 88")); !reflect.DeepEqual(got, time.Unix(0, 0).UTC()) {
		t.Errorf("date with zone = %v", got)
	}
}

func mustAMF0(t *testing.T, v any) []byte {
	t.Helper()
	b, err := AppendAMF0(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestObjectMethods(t *testing.T) {
	o := NewObject("level", "status", "code", "X", "n", 3, "f", float32(1.5), "x", XML("<a/>"))
	if s, ok := o.GetString("code"); !ok || s != "X" {
		t.Errorf("GetString = %q, %v", s, ok)
	}
	if _, ok := o.GetString("x"); ok {
		t.Error("XML read as string")
	}
	if _, ok := o.GetString("missing"); ok {
		t.Error("missing key found")
	}
	if n, ok := o.GetNumber("n"); !ok || n != 3 {
		t.Errorf("GetNumber(int) = %v, %v", n, ok)
	}
	if n, ok := o.GetNumber("f"); !ok || n != 1.5 {
		t.Errorf("GetNumber(float32) = %v, %v", n, ok)
	}
	if _, ok := o.GetNumber("code"); ok {
		t.Error("string read as number")
	}
	if o.Set("code", "Y").Set("new", nil) != o {
		t.Error("Set does not chain")
	}
	if s, _ := o.GetString("code"); s != "Y" || len(o.Pairs) != 6 || o.Pairs[5].Key != "new" {
		t.Errorf("after Set: %#v", o.Pairs)
	}
	if v, ok := o.Get("new"); !ok || v != nil {
		t.Errorf("Get(new) = %v, %v", v, ok)
	}
	// Duplicates: the last one is what Flash sees; Set leaves one.
	d := &Object{Pairs: []Pair{{"a", 1.0}, {"b", 2.0}, {"a", 3.0}}}
	if v, _ := d.GetNumber("a"); v != 3 {
		t.Errorf("duplicate Get = %v", v)
	}
	d.Set("a", 4.0)
	if !reflect.DeepEqual(d.Pairs, []Pair{{"a", 4.0}, {"b", 2.0}}) {
		t.Errorf("Set with duplicates: %#v", d.Pairs)
	}
	var nilObj *Object
	if _, ok := nilObj.Get("a"); ok {
		t.Error("nil object has keys")
	}
	for _, args := range [][]any{{"a"}, {1, 2}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewObject(%v) did not panic", args)
				}
			}()
			NewObject(args...)
		}()
	}
}

func TestDecoder(t *testing.T) {
	d := NewDecoder(hx(t, "05 06 ff 05"))
	if v, err := d.Next(); err != nil || v != nil || d.Remaining() != 3 {
		t.Fatalf("first = %v, %v, %d", v, err, d.Remaining())
	}
	if v, err := d.Next(); err != nil || v != (Undefined{}) {
		t.Fatalf("second = %v, %v", v, err)
	}
	_, err := d.Next()
	if !errors.Is(err, ErrMarker) || !strings.Contains(err.Error(), "offset 2") {
		t.Fatalf("third = %v", err)
	}
	if _, err2 := d.Next(); err2 != err {
		t.Errorf("error is not sticky: %v", err2)
	}
	d = NewDecoder(nil)
	if _, err := d.Next(); err != io.EOF {
		t.Errorf("empty = %v", err)
	}
	if _, _, err := DecodeAMF3(nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("DecodeAMF3(nil) = %v", err)
	}
	// Decoded byte arrays do not alias the input.
	in := hx(t, "11 0c 03 aa")
	v := decodeOne(t, in)
	in[3] = 0
	if !reflect.DeepEqual(v, ByteArray{0xaa}) {
		t.Error("ByteArray aliases the input")
	}
	// An empty key that is not the end marker is a pair.
	if v := decodeOne(t, hx(t, "03 00 00 05 00 00 09")); !reflect.DeepEqual(v, &Object{Pairs: []Pair{{"", nil}}}) {
		t.Errorf("empty key = %#v", v)
	}
	// Booleans: anything non-zero is true.
	if v := decodeOne(t, hx(t, "01 7f")); v != true {
		t.Errorf("boolean 7f = %v", v)
	}
}

func TestGoNumbers(t *testing.T) {
	for _, v := range []any{int(-7), int8(-7), int16(-7), int32(-7), int64(-7),
		uint(7), uint8(7), uint16(7), uint32(7), uint64(7), uintptr(7), float32(7), 7.0} {
		f, _ := toFloat(v)
		b0, err := AppendAMF0(nil, v)
		if err != nil || decodeOne(t, b0) != f {
			t.Errorf("AMF0 %T: % x, %v", v, b0, err)
		}
		b3, err := AppendAMF3(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if _, isFloat := v.(float64); !isFloat && v != float32(7) && b3[0] != 0x04 {
			t.Errorf("AMF3 %T not an integer: % x", v, b3)
		}
		if got, _, err := DecodeAMF3(b3); err != nil || got != f {
			t.Errorf("AMF3 %T: % x, %v", v, b3, err)
		}
		if n, ok := NewObject("n", v).GetNumber("n"); !ok || n != f {
			t.Errorf("GetNumber(%T) = %v, %v", v, n, ok)
		}
	}
	for _, v := range []any{uint(maxInt29 + 1), uint32(maxInt29 + 1), uint64(maxInt29 + 1), uintptr(maxInt29 + 1), int32(minInt29 - 1)} {
		if b, err := AppendAMF3(nil, v); err != nil || b[0] != 0x05 {
			t.Errorf("AMF3 %T out of range: % x, %v", v, b, err)
		}
	}
}

func TestDictionaryKeys(t *testing.T) {
	b := hx(t, `11 11 00
		00 01  08 01 00 00 00 00 00 00 00 00 01  0c 01 01  09 01 01 01
		0a 0b 03 43 01 01  11 01 00 01  03 01  05 3f f8 00 00 00 00 00 00 01`)
	v, n, err := DecodeAMF3(b)
	if err != nil || n != len(b) {
		t.Fatalf("%v, %d", err, n)
	}
	var keys []string
	for _, p := range v.(ECMAArray) {
		keys = append(keys, p.Key)
	}
	want := []string{"undefined", "1970-01-01T00:00:00Z", "[object ByteArray]", "[object Array]",
		"[object C]", "[object Dictionary]", "true", "1.5"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %q, want %q", keys, want)
	}
}

func BenchmarkDecodeConnect(b *testing.B) {
	body := loadCaptures(b)["fp117_p5_plain"]
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeAll(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	info := NewObject("level", "status", "code", "NetConnection.Connect.Success",
		"description", "Connection succeeded", "objectEncoding", 3.0)
	buf := make([]byte, 0, 256)
	for b.Loop() {
		out := buf[:0]
		for _, v := range []any{"_result", 1.0, nil, info} {
			out, _ = AppendAMF0(out, v)
		}
	}
}
