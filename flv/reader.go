package flv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// DefaultMaxTagSize is the tag body limit used when ReaderOptions.MaxTagSize
// is zero. It admits every tag the u24 size field can describe, so the
// default never rejects a valid file; lower it to bound memory harder.
const DefaultMaxTagSize = 16 << 20

// readChunk is the first buffer size for a tag body; the buffer then doubles
// as bytes arrive, so a huge declared size on a short input allocates little.
const readChunk = 64 << 10

// ReaderOptions tunes how strict and how memory-hungry Reader is.
type ReaderOptions struct {
	// MaxTagSize caps the body of one tag (and a header's extra bytes);
	// larger ones fail with ErrTooLarge. Zero or negative means
	// DefaultMaxTagSize.
	MaxTagSize int

	// Lenient accepts PreviousTagSize fields that disagree with the tag
	// (some encoders write junk there). Truncation is still an error.
	Lenient bool
}

// Reader reads tags from an FLV stream. It buffers its input, so it may read
// past the last tag it returns.
type Reader struct {
	r    *bufio.Reader
	opt  ReaderOptions
	hdr  Header
	off  int64 // bytes consumed from the input, for error messages and progress
	tags int
	err  error // sticky: once the stream is broken, every Next repeats why
}

// NewReader reads and validates the file header and PreviousTagSize0 with
// default options (strict, DefaultMaxTagSize).
func NewReader(r io.Reader) (*Reader, error) {
	return NewReaderOptions(r, ReaderOptions{})
}

// NewReaderOptions is NewReader with options. It fails with ErrNotFLV,
// ErrVersion, ErrTagSize (non-zero PreviousTagSize0, unless Lenient),
// ErrTooLarge, io.ErrUnexpectedEOF for a truncated header, or the input's
// own error.
func NewReaderOptions(r io.Reader, o ReaderOptions) (*Reader, error) {
	if o.MaxTagSize <= 0 {
		o.MaxTagSize = DefaultMaxTagSize
	}
	fr := &Reader{r: bufio.NewReaderSize(r, 32<<10), opt: o}
	if err := fr.readHeader(); err != nil {
		return nil, err
	}
	return fr, nil
}

func (r *Reader) readHeader() error {
	var b [headerSize]byte
	n, err := io.ReadFull(r.r, b[:])
	r.off += int64(n)
	// Judge whatever arrived first, so a short non-FLV input is reported as
	// ErrNotFLV rather than as a truncated FLV.
	if herr := checkHeader(b[:n]); herr != nil {
		return herr
	}
	if err != nil {
		return eofIsUnexpected(err)
	}
	r.hdr = Header{HasAudio: b[4]&flagAudio != 0, HasVideo: b[4]&flagVideo != 0}

	// Version 1 defines the offset as 9; a larger one leaves room for
	// fields we do not know, which we skip (bounded by MaxTagSize).
	dataOff := binary.BigEndian.Uint32(b[5:9])
	if dataOff < headerSize {
		return fmt.Errorf("%w: data offset %d is inside the header", ErrNotFLV, dataOff)
	}
	if extra := int64(dataOff) - headerSize; extra > 0 {
		if extra > int64(r.opt.MaxTagSize) {
			return fmt.Errorf("%w: data offset %d", ErrTooLarge, dataOff)
		}
		n, err := io.CopyN(io.Discard, r.r, extra)
		r.off += n
		if err != nil {
			return eofIsUnexpected(err)
		}
	}

	prev, err := r.readPrevSize()
	if err != nil {
		return err
	}
	if prev != 0 && !r.opt.Lenient {
		return fmt.Errorf("%w: PreviousTagSize0 is %d, want 0", ErrTagSize, prev)
	}
	return nil
}

// checkHeader validates as much of the 9-byte header as b holds.
func checkHeader(b []byte) error {
	sig := [3]byte{'F', 'L', 'V'}
	for i := 0; i < len(b) && i < 3; i++ {
		if b[i] != sig[i] {
			return ErrNotFLV
		}
	}
	if len(b) > 3 && b[3] != 1 {
		return fmt.Errorf("%w: version %d", ErrVersion, b[3])
	}
	return nil
}

// Header returns the file header's flags.
func (r *Reader) Header() Header { return r.hdr }

// Offset returns how many input bytes have been consumed, up to the end of
// the last tag returned; with the file size it gives a progress figure.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next tag. It returns io.EOF at a clean end (right after a
// PreviousTagSize), io.ErrUnexpectedEOF if the input ends inside a tag,
// ErrTagSize on a PreviousTagSize mismatch (unless Lenient), ErrTooLarge if
// a tag exceeds MaxTagSize, and ErrEncrypted for a tag with the filter bit
// set. ErrEncrypted is the only error after which Next may be called again
// (the tag has been skipped); every other error is repeated by later calls.
//
// Tags of unknown types are returned as they are, for the caller to skip.
// The returned Data is freshly allocated and owned by the caller.
func (r *Reader) Next() (Tag, error) {
	if r.err != nil {
		return Tag{}, r.err
	}
	t, err := r.next()
	if err != nil {
		if encrypted, ok := err.(skippedError); ok {
			return Tag{}, encrypted.error
		}
		r.err = err
		return Tag{}, err
	}
	r.tags++
	return t, nil
}

// skippedError marks an error after which the stream is still in sync.
type skippedError struct{ error }

func (r *Reader) next() (Tag, error) {
	start := r.off
	var h [tagHeaderSize]byte
	n, err := io.ReadFull(r.r, h[:])
	r.off += int64(n)
	if err != nil {
		return Tag{}, err // io.EOF only when nothing at all was read
	}

	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	t := Tag{
		Type:      h[0] & typeMask, // the 2 reserved bits are ignored
		Timestamp: uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6]),
	}
	// h[8:11] is the stream ID, always 0 by the spec and meaningless to us.

	if size > r.opt.MaxTagSize {
		return Tag{}, fmt.Errorf("%w: tag %d at offset %d declares %d bytes, limit %d",
			ErrTooLarge, r.tags, start, size, r.opt.MaxTagSize)
	}

	if h[0]&filterBit != 0 {
		n, err := io.CopyN(io.Discard, r.r, int64(size))
		r.off += n
		if err != nil {
			return Tag{}, eofIsUnexpected(err)
		}
		if err := r.checkPrevSize(start, size); err != nil {
			return Tag{}, err
		}
		return Tag{}, skippedError{fmt.Errorf("%w: tag %d (type %d) at offset %d",
			ErrEncrypted, r.tags, t.Type, start)}
	}

	if t.Data, err = r.readData(size); err != nil {
		return Tag{}, err
	}
	if err := r.checkPrevSize(start, size); err != nil {
		return Tag{}, err
	}
	return t, nil
}

// readData reads exactly n bytes, growing the buffer only as data arrives so
// that memory use is bounded by what the input really holds.
func (r *Reader) readData(n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), n))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r.r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		r.off += int64(m)
		if err != nil {
			return nil, eofIsUnexpected(err)
		}
	}
	return buf, nil
}

func (r *Reader) checkPrevSize(start int64, size int) error {
	prev, err := r.readPrevSize()
	if err != nil {
		return err
	}
	if want := uint32(tagHeaderSize + size); prev != want && !r.opt.Lenient {
		return fmt.Errorf("%w: tag %d at offset %d is %d bytes, PreviousTagSize says %d",
			ErrTagSize, r.tags, start, want, prev)
	}
	return nil
}

func (r *Reader) readPrevSize() (uint32, error) {
	var b [prevSizeLen]byte
	n, err := io.ReadFull(r.r, b[:])
	r.off += int64(n)
	if err != nil {
		return 0, eofIsUnexpected(err)
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// eofIsUnexpected maps io.EOF to io.ErrUnexpectedEOF for reads that must not
// hit the end of the input.
func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
