package flv

import "errors"

// Sentinel errors. Reader and Writer wrap them with context (offset, sizes),
// so compare with errors.Is. Truncation is reported as io.ErrUnexpectedEOF,
// unwrapped, as the io package does.
var (
	// ErrNotFLV means the input does not start with the "FLV" signature or its
	// header is malformed (data offset smaller than the header).
	ErrNotFLV = errors.New("flv: not an FLV file")

	// ErrVersion means the header's version byte is not 1, the only version
	// defined; later layouts could differ, so guessing is unsafe.
	ErrVersion = errors.New("flv: unsupported FLV version")

	// ErrTagSize means a PreviousTagSize field disagrees with the tag before
	// it, usually a sign of corruption or of a reader out of sync. Reader
	// ignores it when ReaderOptions.Lenient is set.
	ErrTagSize = errors.New("flv: PreviousTagSize mismatch")

	// ErrTagType means Writer was asked to write a tag type other than
	// audio, video or script data, which players would not understand.
	ErrTagType = errors.New("flv: unsupported tag type")

	// ErrTooLarge means a tag body exceeds the format's u24 limit (Writer) or
	// ReaderOptions.MaxTagSize (Reader), or a header is absurdly large.
	ErrTooLarge = errors.New("flv: tag too large")

	// ErrEncrypted means a tag has the filter bit set (encrypted or otherwise
	// pre-processed, FLV 10.1 E.4.1); its body is useless without the key.
	// Reader has already skipped it, so Next may be called again.
	ErrEncrypted = errors.New("flv: encrypted tag")

	// ErrClosed means WriteTag was called after Close.
	ErrClosed = errors.New("flv: writer closed")
)
