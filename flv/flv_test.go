package flv

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

func sampleTags() []Tag {
	big := make([]byte, 200<<10) // several read chunks
	for i := range big {
		big[i] = byte(i * 7)
	}
	return []Tag{
		{Type: TagScript, Timestamp: 0, Data: []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}},
		{Type: TagVideo, Timestamp: 0, Data: []byte{0x17, 0x00, 0, 0, 0, 1, 2, 3}},
		{Type: TagAudio, Timestamp: 0, Data: []byte{0xaf, 0x00, 0x12, 0x10}},
		{Type: TagAudio, Timestamp: 23, Data: []byte{}},
		{Type: TagVideo, Timestamp: 0xFFFFFF, Data: []byte{0x27, 0x01}},
		{Type: TagVideo, Timestamp: 0x1000000, Data: big}, // needs the extended byte
		{Type: TagAudio, Timestamp: 0x12345678, Data: []byte{0xaf, 0x01, 0xde, 0xad}},
		{Type: TagScript, Timestamp: 0xFFFFFFFF, Data: []byte{0x05}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, h := range []Header{{}, {HasAudio: true}, {HasVideo: true}, {HasAudio: true, HasVideo: true}} {
		tags := sampleTags()
		file := writeAll(t, h, tags)
		for _, r := range []struct {
			name string
			r    io.Reader
		}{
			{"whole", bytes.NewReader(file)},
			{"one byte at a time", iotest.OneByteReader(bytes.NewReader(file))},
			{"data with EOF", iotest.DataErrReader(bytes.NewReader(file))},
		} {
			fr, err := NewReader(r.r)
			if err != nil {
				t.Fatalf("%v %s: NewReader: %v", h, r.name, err)
			}
			if fr.Header() != h {
				t.Errorf("%s: header %+v, want %+v", r.name, fr.Header(), h)
			}
			var got []Tag
			for {
				tag, err := fr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: Next: %v", r.name, err)
				}
				got = append(got, tag)
			}
			if d := diffTags(got, tags); d != "" {
				t.Fatalf("%s: %s", r.name, d)
			}
			if fr.Offset() != int64(len(file)) {
				t.Errorf("%s: Offset %d, want %d", r.name, fr.Offset(), len(file))
			}
			if _, err := fr.Next(); err != io.EOF {
				t.Errorf("%s: Next after EOF = %v, want io.EOF", r.name, err)
			}
		}
	}
}

// TestWriterLayout pins the byte layout against the spec, independently of
// Reader.
func TestWriterLayout(t *testing.T) {
	file := writeAll(t, Header{HasAudio: true, HasVideo: true},
		[]Tag{{Type: TagVideo, Timestamp: 0x12345678, Data: []byte{0xAA, 0xBB}}})
	want := []byte{
		'F', 'L', 'V', 1, 0x05, 0, 0, 0, 9, // header
		0, 0, 0, 0, // PreviousTagSize0
		9, 0, 0, 2, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, // tag header: ts u24 then extended byte
		0xAA, 0xBB,
		0, 0, 0, 13, // PreviousTagSize
	}
	if !bytes.Equal(file, want) {
		t.Fatalf("got  % x\nwant % x", file, want)
	}
}

func TestMaxSizeTag(t *testing.T) {
	data := bytes.Repeat([]byte{0x5a}, MaxDataSize)
	file := writeAll(t, Header{HasVideo: true}, []Tag{{Type: TagVideo, Timestamp: 1, Data: data}})
	_, tags, err := readAll(bytes.NewReader(file), ReaderOptions{})
	if err != io.EOF || len(tags) != 1 || !bytes.Equal(tags[0].Data, data) {
		t.Fatalf("read back: %d tags, err %v", len(tags), err)
	}

	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{})
	err = w.WriteTag(Tag{Type: TagVideo, Data: make([]byte, MaxDataSize+1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized WriteTag = %v, want ErrTooLarge", err)
	}
	if err := w.WriteTag(Tag{Type: TagAudio, Data: []byte{1}}); err != nil {
		t.Fatalf("WriteTag after a rejected tag: %v", err)
	}
	w.Close()
	if w.Tags() != 1 || buf.Len() != 13+11+1+4 {
		t.Fatalf("after rejection: %d tags, %d bytes", w.Tags(), buf.Len())
	}
}

func TestWriterRejectsTagType(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{})
	for _, typ := range []uint8{0, 7, 10, 17, 19, 0x28, 0xff} {
		if err := w.WriteTag(Tag{Type: typ, Data: []byte{1}}); !errors.Is(err, ErrTagType) {
			t.Errorf("type %d: %v, want ErrTagType", typ, err)
		}
	}
	w.Close()
	if w.Tags() != 0 || w.Bytes() != 13 || buf.Len() != 13 {
		t.Fatalf("rejected tags were counted or written: %d tags, %d/%d bytes", w.Tags(), w.Bytes(), buf.Len())
	}
}

// closeRecorder is a writer that notices Close, which Writer must not call.
type closeRecorder struct {
	bytes.Buffer
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestWriterClose(t *testing.T) {
	var dst closeRecorder
	w, err := NewWriter(&dst, Header{HasAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	if dst.Len() != 13 {
		t.Fatalf("header not flushed by NewWriter: %d bytes", dst.Len())
	}
	if err := w.WriteTag(Tag{Type: TagAudio, Timestamp: 5, Data: []byte{0x2f, 1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if dst.Len() != 13+11+3+4 || int64(dst.Len()) != w.Bytes() {
		t.Fatalf("Close did not flush: %d bytes, Bytes() %d", dst.Len(), w.Bytes())
	}
	if dst.closed {
		t.Fatal("Close closed the underlying writer")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteTag(Tag{Type: TagAudio}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteTag after Close = %v, want ErrClosed", err)
	}
	if err := w.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
}

// limitWriter accepts n bytes, then fails.
type limitWriter struct{ n int }

var errFull = errors.New("disk full")

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		n := l.n
		l.n = 0
		return n, errFull
	}
	l.n -= len(p)
	return len(p), nil
}

func TestWriterIOError(t *testing.T) {
	if _, err := NewWriter(&limitWriter{n: 5}, Header{}); !errors.Is(err, errFull) {
		t.Fatalf("NewWriter on a failing writer = %v", err)
	}
	w, err := NewWriter(&limitWriter{n: 13 + 100}, Header{})
	if err != nil {
		t.Fatal(err)
	}
	// 200 KiB exceeds the buffer, so the failure surfaces in WriteTag.
	if err := w.WriteTag(Tag{Type: TagVideo, Data: make([]byte, 200<<10)}); !errors.Is(err, errFull) {
		t.Fatalf("WriteTag = %v, want errFull", err)
	}
	if err := w.WriteTag(Tag{Type: TagVideo, Data: []byte{1}}); !errors.Is(err, errFull) {
		t.Fatalf("WriteTag after failure = %v, want errFull (sticky)", err)
	}
	if err := w.Close(); !errors.Is(err, errFull) {
		t.Fatalf("Close after failure = %v, want errFull", err)
	}

	// A failure hidden in the buffer surfaces at Close.
	w, _ = NewWriter(&limitWriter{n: 13 + 10}, Header{})
	if err := w.WriteTag(Tag{Type: TagAudio, Data: make([]byte, 100)}); err != nil {
		t.Fatalf("buffered WriteTag: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errFull) {
		t.Fatalf("Close = %v, want errFull", err)
	}
}

func TestHeaderValidation(t *testing.T) {
	valid := fileHeader(0x05)
	tests := []struct {
		name    string
		in      []byte
		lenient bool
		want    error // nil = success
		hdr     Header
	}{
		{"empty", nil, false, io.ErrUnexpectedEOF, Header{}},
		{"FL", []byte("FL"), false, io.ErrUnexpectedEOF, Header{}},
		{"short header", valid[:8], false, io.ErrUnexpectedEOF, Header{}},
		{"no PreviousTagSize0", valid[:9], false, io.ErrUnexpectedEOF, Header{}},
		{"short PreviousTagSize0", valid[:12], false, io.ErrUnexpectedEOF, Header{}},
		{"one wrong byte", []byte("X"), false, ErrNotFLV, Header{}},
		{"FLX", []byte("FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"), false, ErrNotFLV, Header{}},
		{"lowercase", []byte("flv\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"), false, ErrNotFLV, Header{}},
		{"mp4", []byte("\x00\x00\x00\x18ftypisom"), false, ErrNotFLV, Header{}},
		{"version 0", []byte("FLV\x00"), false, ErrVersion, Header{}},
		{"version 2", []byte("FLV\x02\x05\x00\x00\x00\x09\x00\x00\x00\x00"), false, ErrVersion, Header{}},
		{"offset 8", []byte("FLV\x01\x05\x00\x00\x00\x08\x00\x00\x00\x00"), false, ErrNotFLV, Header{}},
		{"offset 0", []byte("FLV\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00"), false, ErrNotFLV, Header{}},
		{"offset 4 GiB", []byte("FLV\x01\x05\xff\xff\xff\xff\x00\x00\x00\x00"), false, ErrTooLarge, Header{}},
		{"offset 12, short", []byte("FLV\x01\x05\x00\x00\x00\x0c\xaa\xbb"), false, io.ErrUnexpectedEOF, Header{}},
		{"offset 12", []byte("FLV\x01\x05\x00\x00\x00\x0c\xaa\xbb\xcc\x00\x00\x00\x00"), false, nil, Header{true, true}},
		{"PreviousTagSize0 not 0", []byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x0b"), false, ErrTagSize, Header{}},
		{"PreviousTagSize0 not 0, lenient", []byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x0b"), true, nil, Header{true, true}},
		{"audio only", fileHeader(0x04), false, nil, Header{HasAudio: true}},
		{"video only", fileHeader(0x01), false, nil, Header{HasVideo: true}},
		{"no flags", fileHeader(0x00), false, nil, Header{}},
		{"reserved flag bits ignored", fileHeader(0xfa), false, nil, Header{}},
	}
	for _, tc := range tests {
		r, err := NewReaderOptions(bytes.NewReader(tc.in), ReaderOptions{Lenient: tc.lenient})
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if r.Header() != tc.hdr {
				t.Errorf("%s: header %+v, want %+v", tc.name, r.Header(), tc.hdr)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("%s: Next on a header-only file = %v, want io.EOF", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if r != nil {
			t.Errorf("%s: non-nil Reader with an error", tc.name)
		}
	}
}

// TestTruncation cuts a file at every length: a cut at a tag boundary is a
// shorter valid file, anything else must be reported, never read silently.
func TestTruncation(t *testing.T) {
	tags := sampleTags()
	tags[5].Data = tags[5].Data[:300] // keep the quadratic loop fast
	file := writeAll(t, Header{HasAudio: true, HasVideo: true}, tags)

	boundary := map[int]int{13: 0} // prefix length -> tags it holds
	off := 13
	for i, tag := range tags {
		off += 11 + len(tag.Data) + 4
		boundary[off] = i + 1
	}
	for _, lenient := range []bool{false, true} {
		for n := 0; n < len(file); n++ {
			_, got, err := readAll(bytes.NewReader(file[:n]), ReaderOptions{Lenient: lenient})
			if k, ok := boundary[n]; ok {
				if err != io.EOF {
					t.Fatalf("lenient=%v prefix %d (boundary): err %v, want io.EOF", lenient, n, err)
				}
				if d := diffTags(got, tags[:k]); d != "" {
					t.Fatalf("lenient=%v prefix %d: %s", lenient, n, d)
				}
				continue
			}
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("lenient=%v prefix %d: err %v after %d tags, want io.ErrUnexpectedEOF", lenient, n, err, len(got))
			}
		}
	}
}

func TestPreviousTagSizeMismatch(t *testing.T) {
	file := fileHeader(0x05)
	file = append(file, goodTag(TagAudio, 1, []byte{0xaf, 1, 2})...)
	file = append(file, rawTag(TagVideo, 2, []byte{0x17, 1, 0, 0, 0}, 99)...) // should be 16
	file = append(file, goodTag(TagAudio, 3, []byte{0xaf, 1, 3})...)

	fr, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	_, err = fr.Next()
	if !errors.Is(err, ErrTagSize) {
		t.Fatalf("mismatch: err %v, want ErrTagSize", err)
	}
	if _, err2 := fr.Next(); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}

	_, tags, err := readAll(bytes.NewReader(file), ReaderOptions{Lenient: true})
	if err != io.EOF || len(tags) != 3 || tags[1].Timestamp != 2 || !bytes.Equal(tags[1].Data, []byte{0x17, 1, 0, 0, 0}) {
		t.Fatalf("lenient: %d tags, err %v", len(tags), err)
	}

	// Lenient still rejects truncation, including a missing final field.
	_, _, err = readAll(bytes.NewReader(file[:len(file)-4]), ReaderOptions{Lenient: true})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("lenient, missing last PreviousTagSize: %v", err)
	}
}

// TestOversizedDeclaredTag: a tiny input claiming a 16 MiB tag must fail
// fast without allocating anywhere near the claim.
func TestOversizedDeclaredTag(t *testing.T) {
	file := fileHeader(0x01)
	file = append(file, TagVideo, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0)
	file = append(file, []byte("only a few bytes")...)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, _, err := readAll(bytes.NewReader(file), ReaderOptions{})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a %d-byte input", alloc, len(file))
	}
	if elapsed > time.Second {
		t.Errorf("took %v", elapsed)
	}

	// Above MaxTagSize the size alone is enough to refuse.
	_, _, err = readAll(bytes.NewReader(file), ReaderOptions{MaxTagSize: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("MaxTagSize: err %v, want ErrTooLarge", err)
	}
	// Exactly MaxTagSize is allowed.
	ok := append(fileHeader(0x01), goodTag(TagVideo, 0, make([]byte, 100))...)
	if _, tags, err := readAll(bytes.NewReader(ok), ReaderOptions{MaxTagSize: 100}); err != io.EOF || len(tags) != 1 {
		t.Fatalf("tag of exactly MaxTagSize: %d tags, err %v", len(tags), err)
	}
}

func TestEncryptedTagSkipped(t *testing.T) {
	file := fileHeader(0x05)
	file = append(file, goodTag(0x20|TagVideo, 1, []byte{1, 2, 3, 4})...)
	file = append(file, goodTag(TagAudio, 2, []byte{0xaf, 1})...)
	fr, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fr.Next(); !errors.Is(err, ErrEncrypted) {
		t.Fatalf("encrypted tag: err %v, want ErrEncrypted", err)
	}
	tag, err := fr.Next()
	if err != nil || tag.Type != TagAudio || tag.Timestamp != 2 {
		t.Fatalf("tag after encrypted one: %+v, %v", tag, err)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	// A truncated encrypted tag is still truncation.
	_, _, err = readAll(bytes.NewReader(file[:13+11+2]), ReaderOptions{})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated encrypted tag: %v", err)
	}
}

func TestUnknownTagTypeReturned(t *testing.T) {
	file := fileHeader(0x05)
	file = append(file, goodTag(5, 7, []byte{9, 9})...)
	file = append(file, goodTag(0xC0|TagAudio, 8, []byte{0x2f})...) // reserved bits set
	_, tags, err := readAll(bytes.NewReader(file), ReaderOptions{})
	if err != io.EOF || len(tags) != 2 {
		t.Fatalf("%d tags, err %v", len(tags), err)
	}
	if tags[0].Type != 5 || tags[0].Timestamp != 7 || !bytes.Equal(tags[0].Data, []byte{9, 9}) {
		t.Errorf("unknown type: %+v", tags[0])
	}
	if tags[1].Type != TagAudio {
		t.Errorf("reserved bits not masked: type %d", tags[1].Type)
	}
}

func TestReadErrorPassedThrough(t *testing.T) {
	boom := errors.New("boom")
	file := append(fileHeader(0x05), goodTag(TagAudio, 1, []byte{1, 2, 3})...)
	r := io.MultiReader(bytes.NewReader(file[:20]), iotest.ErrReader(boom))
	_, _, err := readAll(r, ReaderOptions{})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}
