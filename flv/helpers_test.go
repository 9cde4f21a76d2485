package flv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

// fileHeader returns a 9-byte FLV header plus PreviousTagSize0 = 0.
func fileHeader(flags byte) []byte {
	return []byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}
}

// rawTag builds one tag by hand (independently of Writer), with an explicit
// first byte and PreviousTagSize so tests can corrupt either.
func rawTag(first byte, ts uint32, data []byte, prev uint32) []byte {
	n := len(data)
	b := []byte{first, byte(n >> 16), byte(n >> 8), byte(n),
		byte(ts >> 16), byte(ts >> 8), byte(ts), byte(ts >> 24), 0, 0, 0}
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, prev)
}

// goodTag is rawTag with a correct PreviousTagSize.
func goodTag(typ byte, ts uint32, data []byte) []byte {
	return rawTag(typ, ts, data, uint32(11+len(data)))
}

// readAll reads every tag until the first error other than ErrEncrypted.
// It returns the header, the tags and the error that stopped it (io.EOF at a
// clean end).
func readAll(r io.Reader, o ReaderOptions) (Header, []Tag, error) {
	fr, err := NewReaderOptions(r, o)
	if err != nil {
		return Header{}, nil, err
	}
	var tags []Tag
	for {
		t, err := fr.Next()
		if errors.Is(err, ErrEncrypted) {
			continue
		}
		if err != nil {
			return fr.Header(), tags, err
		}
		tags = append(tags, t)
	}
}

// writeAll writes an FLV file holding tags.
func writeAll(t testing.TB, h Header, tags []Tag) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for i, tag := range tags {
		if err := w.WriteTag(tag); err != nil {
			t.Fatalf("WriteTag %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if w.Bytes() != int64(buf.Len()) {
		t.Fatalf("Bytes() = %d, wrote %d", w.Bytes(), buf.Len())
	}
	if w.Tags() != len(tags) {
		t.Fatalf("Tags() = %d, want %d", w.Tags(), len(tags))
	}
	return buf.Bytes()
}

// diffTags describes the first difference between two tag lists, or "".
func diffTags(got, want []Tag) string {
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Timestamp != w.Timestamp || !bytes.Equal(g.Data, w.Data) {
			return fmt.Sprintf("tag %d: got type %d ts %d len %d, want type %d ts %d len %d",
				i, g.Type, g.Timestamp, len(g.Data), w.Type, w.Timestamp, len(w.Data))
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d tags, want %d", len(got), len(want))
	}
	return ""
}
