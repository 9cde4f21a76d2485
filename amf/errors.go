package amf

import "errors"

// Sentinel errors. Decoding and encoding errors wrap one of these (test with
// errors.Is) and add the offset or Go type, so a caller can tell a malformed
// or hostile message from a value this package cannot represent.
var (
	// ErrTruncated means the input ended inside a value, or a declared
	// length or count is larger than the bytes that remain.
	ErrTruncated = errors.New("amf: truncated input")
	// ErrMarker means an unknown or reserved type marker (including a bare
	// AMF0 object-end marker where a value is expected).
	ErrMarker = errors.New("amf: unknown type marker")
	// ErrDepth means containers are nested more than 64 deep, which would
	// otherwise let a small message exhaust the stack.
	ErrDepth = errors.New("amf: nesting too deep")
	// ErrReference means a reference index points outside its table.
	ErrReference = errors.New("amf: reference out of range")
	// ErrTooLarge means a value does not fit the length field of the
	// encoding asked for (e.g. an AMF0 key over 65535 bytes).
	ErrTooLarge = errors.New("amf: value too large for its encoding")
	// ErrUnsupported means valid AMF this package does not decode (AMF3
	// externalizable objects, whose body only the class can parse) or a Go
	// value that the requested encoding cannot express.
	ErrUnsupported = errors.New("amf: unsupported value")
)
