package flv

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to Reader. Whatever reads cleanly must
// survive a write/read round trip unchanged, and reading must stop with one
// of the documented errors, never a panic.
func FuzzReader(f *testing.F) {
	valid := writeAll(f, Header{HasAudio: true, HasVideo: true}, []Tag{
		{Type: TagScript, Data: []byte{0x02, 0x00, 0x02, 'h', 'i'}},
		{Type: TagVideo, Timestamp: 0, Data: []byte{0x17, 0x00, 1, 2}},
		{Type: TagAudio, Timestamp: 0x01020304, Data: []byte{0xaf, 0x00, 0x12, 0x10}},
		{Type: TagAudio, Timestamp: 40, Data: nil},
	})
	badPrev := bytes.Clone(valid)
	badPrev[13+11+5+3] ^= 0xff // PreviousTagSize of the first tag
	encrypted := bytes.Clone(valid)
	encrypted[13] |= 0x20
	extraHeader := append([]byte("FLV\x01\x05\x00\x00\x00\x0b\xee\xee"), valid[9:]...)
	huge := append(fileHeader(0x01), TagVideo, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 2)

	for _, seed := range [][]byte{
		valid, valid[:len(valid)-3], valid[:13], valid[:5], badPrev, encrypted,
		extraHeader, huge, nil, []byte("FLV"), []byte("FLV\x02"),
		append(fileHeader(0), goodTag(0x7f, 1, []byte{1})...),
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}

	f.Fuzz(func(t *testing.T, data []byte, lenient bool) {
		fr, err := NewReaderOptions(bytes.NewReader(data), ReaderOptions{Lenient: lenient, MaxTagSize: 1 << 20})
		if err != nil {
			if fr != nil {
				t.Fatal("non-nil Reader with an error")
			}
			return
		}
		var tags []Tag
		for {
			tag, err := fr.Next()
			if fr.Offset() > int64(len(data)) {
				t.Fatalf("Offset %d beyond input length %d", fr.Offset(), len(data))
			}
			if errors.Is(err, ErrEncrypted) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF &&
					!errors.Is(err, ErrTagSize) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("undocumented error %v", err)
				}
				break
			}
			if tag.Type > typeMask || len(tag.Data) > len(data) {
				t.Fatalf("impossible tag: type %d, %d bytes from %d", tag.Type, len(tag.Data), len(data))
			}
			// Writer accepts only the types players understand.
			if tag.Type == TagAudio || tag.Type == TagVideo || tag.Type == TagScript {
				tags = append(tags, tag)
			}
		}

		file := writeAll(t, fr.Header(), tags)
		h, got, err := readAll(bytes.NewReader(file), ReaderOptions{})
		if err != io.EOF {
			t.Fatalf("re-reading our own output: %v", err)
		}
		if h != fr.Header() {
			t.Fatalf("header %+v, want %+v", h, fr.Header())
		}
		if d := diffTags(got, tags); d != "" {
			t.Fatal(d)
		}
		if again := writeAll(t, h, got); !bytes.Equal(again, file) {
			t.Fatal("writing the same tags twice gave different bytes")
		}
	})
}
