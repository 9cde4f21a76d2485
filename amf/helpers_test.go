package amf

import (
	"bufio"
	"encoding/hex"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// hx turns "03 00 01 61 ..." into bytes; a token in double quotes stands for
// its text (no spaces inside), so spec examples can be pasted as written.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for _, tok := range strings.Fields(s) {
		if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
			out = append(out, tok[1:len(tok)-1]...)
			continue
		}
		b, err := hex.DecodeString(tok)
		if err != nil {
			t.Fatalf("bad hex token %q: %v", tok, err)
		}
		out = append(out, b...)
	}
	return out
}

// captureBody is one AMF message body cut out of a decrypted Flash Player
// 11.7 packet in internal/testvec (optman/go-rtmfp capture).
type captureBody struct {
	name string
	// lenOff is where the user-data chunk's u16 length sits; the chunk
	// data starts right after it, and the body ends with the chunk.
	lenOff int
	tcOff  int    // start of the TC message
	tc     string // expected TC header bytes, hex
}

var captureBodies = []captureBody{
	// connect, type 14, ts 0; chunk header 80 02 01 01 + options.
	{"fp117_p5_plain", 8, 21, "14 00 00 00 00"},
	// _result, type 14, in the second chunk (after an ack chunk).
	{"fp117_p6_plain", 14, 30, "14 00 00 00 00"},
	// setPeerInfo, type 11 (AMF3 command): ts 0x82 then format byte 00.
	{"fp117_p8_plain", 8, 14, "11 00 00 00 82 00"},
}

// loadCaptures returns the AMF bodies of captureBodies keyed by name.
func loadCaptures(t testing.TB) map[string][]byte {
	t.Helper()
	f, err := os.Open("../internal/testvec/testdata/flash-captures.txt")
	if err != nil {
		t.Fatalf("capture file: %v", err)
	}
	defer f.Close()
	raw := map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			continue
		}
		raw[strings.TrimSpace(name)] = b
	}
	out := map[string][]byte{}
	for _, c := range captureBodies {
		p, ok := raw[c.name]
		if !ok {
			t.Fatalf("capture %s missing", c.name)
		}
		end := c.lenOff + 2 + (int(p[c.lenOff])<<8 | int(p[c.lenOff+1]))
		tc := hx(t, c.tc)
		if got := p[c.tcOff : c.tcOff+len(tc)]; string(got) != string(tc) {
			t.Fatalf("%s: TC header % x, want % x", c.name, got, tc)
		}
		out[c.name] = p[c.tcOff+len(tc) : end]
	}
	return out
}

// normalize maps a decoded value to a form that compares with
// reflect.DeepEqual across an encode/decode round trip: NaN becomes a
// marker, nil and empty slices agree, times compare by millisecond, and the
// three associative array shapes (ECMAArray, AMF3Array, Dictionary) merge,
// since which one a value decodes to depends on whether it was written in
// AMF0 or AMF3.
func normalize(v any) any {
	type nan struct{}
	type obj struct {
		Class string
		Pairs []any
	}
	type assoc struct {
		Assoc []any
		Dense []any
	}
	type date struct{ Ms int64 }
	type bytes struct{ B string }
	pairs := func(ps []Pair) []any {
		out := []any{}
		for _, p := range ps {
			out = append(out, p.Key, normalize(p.Value))
		}
		return out
	}
	items := func(a []any) []any {
		out := []any{}
		for _, x := range a {
			out = append(out, normalize(x))
		}
		return out
	}
	switch v := v.(type) {
	case float64:
		if math.IsNaN(v) {
			return nan{}
		}
		return v
	case *Object:
		return obj{v.Class, pairs(v.Pairs)}
	case ECMAArray:
		if len(v) == 0 {
			return items(nil)
		}
		return assoc{pairs(v), items(nil)}
	case AMF3Array:
		if len(v.Assoc) == 0 {
			return items(v.Dense)
		}
		return assoc{pairs(v.Assoc), items(v.Dense)}
	case Array:
		return items(v)
	case ByteArray:
		return bytes{string(v)}
	case time.Time:
		return date{v.UnixMilli()}
	}
	return v
}
