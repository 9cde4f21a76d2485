package flv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Writer writes an FLV stream. It buffers output; Close (or Flush) pushes it
// to the underlying writer.
type Writer struct {
	bw       *bufio.Writer
	tags     int
	bytes    int64
	err      error // sticky I/O error: later output would be misaligned
	closed   bool
	closeErr error
}

// NewWriter writes the file header and PreviousTagSize0 and flushes them, so
// an unusable destination fails here rather than at the first tag.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	fw := &Writer{bw: bufio.NewWriterSize(w, 64<<10)}
	var flags byte
	if h.HasAudio {
		flags |= flagAudio
	}
	if h.HasVideo {
		flags |= flagVideo
	}
	hdr := [headerSize + prevSizeLen]byte{'F', 'L', 'V', 1, flags, 0, 0, 0, headerSize, 0, 0, 0, 0}
	if _, err := fw.bw.Write(hdr[:]); err != nil {
		return nil, err
	}
	if err := fw.bw.Flush(); err != nil {
		return nil, err
	}
	fw.bytes = int64(len(hdr))
	return fw, nil
}

// WriteTag appends one tag. It rejects types other than TagAudio, TagVideo
// and TagScript (ErrTagType) and bodies over MaxDataSize (ErrTooLarge); such
// rejections write nothing, so the caller may skip the tag and go on. An I/O
// error, by contrast, is returned by every later call.
func (w *Writer) WriteTag(t Tag) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	switch t.Type {
	case TagAudio, TagVideo, TagScript:
	default:
		return fmt.Errorf("%w: %d", ErrTagType, t.Type)
	}
	size := len(t.Data)
	if size > MaxDataSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxDataSize)
	}
	ts := t.Timestamp
	h := [tagHeaderSize]byte{
		t.Type,
		byte(size >> 16), byte(size >> 8), byte(size),
		byte(ts >> 16), byte(ts >> 8), byte(ts), byte(ts >> 24), // u24 + extended upper byte
		0, 0, 0, // stream ID
	}
	var prev [prevSizeLen]byte
	binary.BigEndian.PutUint32(prev[:], uint32(tagHeaderSize+size))
	for _, b := range [][]byte{h[:], t.Data, prev[:]} {
		if _, err := w.bw.Write(b); err != nil {
			w.err = err
			return err
		}
	}
	w.tags++
	w.bytes += int64(tagHeaderSize + size + prevSizeLen)
	return nil
}

// Flush pushes buffered tags to the underlying writer, e.g. so that a file
// being recorded live is playable up to now.
func (w *Writer) Flush() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Close flushes buffered output. It does not close the underlying writer,
// which the caller owns (it may want to fsync or rename it first). Calling
// Close again returns the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.closeErr = w.Flush()
	w.closed = true
	return w.closeErr
}

// Tags returns the number of tags written so far.
func (w *Writer) Tags() int { return w.tags }

// Bytes returns the number of FLV bytes produced so far, header included
// (some may still be buffered until Flush or Close).
func (w *Writer) Bytes() int64 { return w.bytes }
