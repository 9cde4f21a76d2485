package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// DefaultKey is the Flash profile's key for startup packets.
var DefaultKey = []byte("Adobe Systems 02")

var zeroIV [16]byte

type ivSetter interface{ SetIV([]byte) }

// Features are the optional per-direction packet features of RFC 7425
// §4.6.4/§4.6.5, fixed by the keying negotiation. Flash negotiates both off.
type Features struct {
	HMACLen int  // 0: no packet HMAC (16-bit checksum instead); else 4..32
	Seq     bool // session sequence numbers
}

// Sealer encrypts packets in one direction of a session. Not safe for
// concurrent use.
//
// The AES key schedule and CBC state (about half a kilobyte per direction)
// are built on first use and dropped by Release, so that an idle session
// holds only its 16-byte key.
type Sealer struct {
	key     [16]byte
	hmacKey []byte
	f       Features
	nextSeq uint64
	st      *cipherState
}

// Opener decrypts packets in one direction of a session. Not safe for
// concurrent use. Like Sealer it builds its cipher state lazily.
type Opener struct {
	key     [16]byte
	hmacKey []byte
	f       Features
	replay  replayWindow
	st      *cipherState
}

type cipherState struct {
	cbc cipher.BlockMode
	mac hash.Hash
	sum [sha256.Size]byte
}

func newState(key *[16]byte, encrypt bool, hmacLen int, hmacKey []byte) *cipherState {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // 16-byte keys by construction
	}
	st := &cipherState{}
	if encrypt {
		st.cbc = cipher.NewCBCEncrypter(block, zeroIV[:])
	} else {
		st.cbc = cipher.NewCBCDecrypter(block, zeroIV[:])
	}
	if hmacLen > 0 {
		st.mac = hmac.New(sha256.New, hmacKey)
	}
	return st
}

// NewSealer returns a Sealer for a 16-byte AES key. hmacKey is used only if
// f.HMACLen > 0.
func NewSealer(key []byte, f Features, hmacKey []byte) (*Sealer, error) {
	if len(key) != 16 {
		return nil, aes.KeySizeError(len(key))
	}
	return &Sealer{key: [16]byte(key), f: f, hmacKey: hmacKey}, nil
}

// NewOpener returns an Opener for a 16-byte AES key.
func NewOpener(key []byte, f Features, hmacKey []byte) (*Opener, error) {
	if len(key) != 16 {
		return nil, aes.KeySizeError(len(key))
	}
	return &Opener{key: [16]byte(key), f: f, hmacKey: hmacKey}, nil
}

// Release drops the cipher state; the next Seal rebuilds it.
func (s *Sealer) Release() { s.st = nil }

// Release drops the cipher state; the next Open rebuilds it.
func (o *Opener) Release() { o.st = nil }

// NewDefaultSealer and NewDefaultOpener use the default key, no features:
// the startup-packet ciphers.
func NewDefaultSealer() *Sealer {
	s, _ := NewSealer(DefaultKey, Features{}, nil)
	return s
}

// NewDefaultOpener is the startup-packet decrypter.
func NewDefaultOpener() *Opener { o, _ := NewOpener(DefaultKey, Features{}, nil); return o }

func resetIV(m cipher.BlockMode) {
	m.(ivSetter).SetIV(zeroIV[:])
}

// Overhead is the worst-case number of bytes Seal adds to a packet: the
// scrambled SID, a sequence number, checksum, padding and HMAC.
func (s *Sealer) Overhead() int {
	n := 4 + 15
	if s.f.Seq {
		n += MaxVLULen
	}
	if s.f.HMACLen > 0 {
		n += s.f.HMACLen
	} else {
		n += 2
	}
	return n
}

// Seal frames packet (common header and chunks) for session ID sid and
// appends the datagram to dst.
func (s *Sealer) Seal(dst []byte, sid uint32, packet []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	ptStart := len(dst)
	if s.f.Seq {
		dst = AppendVLU(dst, s.nextSeq)
		s.nextSeq++
	}
	ck := -1
	if s.f.HMACLen == 0 {
		ck = len(dst)
		dst = append(dst, 0, 0)
	}
	dst = append(dst, packet...)
	for pad := PadLen(len(dst) - ptStart); pad > 0; pad-- {
		dst = append(dst, 0xff)
	}
	if ck >= 0 {
		binary.BigEndian.PutUint16(dst[ck:], Checksum(dst[ck+2:]))
	}
	ct := dst[ptStart:]
	if s.st == nil {
		s.st = newState(&s.key, true, s.f.HMACLen, s.hmacKey)
	}
	st := s.st
	resetIV(st.cbc)
	st.cbc.CryptBlocks(ct, ct)
	binary.BigEndian.PutUint32(dst[start:], ScrambleSID(sid, ct))
	if s.f.HMACLen > 0 {
		st.mac.Reset()
		st.mac.Write(ct)
		sum := st.mac.Sum(st.sum[:0])
		dst = append(dst, sum[:s.f.HMACLen]...)
	}
	return dst
}

// Open authenticates and decrypts a datagram in place and returns the packet
// (common header, chunks and padding). The datagram's bytes are overwritten.
func (o *Opener) Open(datagram []byte) ([]byte, error) {
	n := len(datagram) - 4 - o.f.HMACLen
	if n < 16 || n%16 != 0 || len(datagram) > MaxRecvSize {
		return nil, ErrPacketSize
	}
	ct := datagram[4 : 4+n]
	if o.st == nil {
		o.st = newState(&o.key, false, o.f.HMACLen, o.hmacKey)
	}
	st := o.st
	if o.f.HMACLen > 0 {
		st.mac.Reset()
		st.mac.Write(ct)
		sum := st.mac.Sum(st.sum[:0])
		if subtle.ConstantTimeCompare(sum[:o.f.HMACLen], datagram[4+n:]) != 1 {
			return nil, ErrHMAC
		}
	}
	resetIV(st.cbc)
	st.cbc.CryptBlocks(ct, ct)
	pt := ct
	var seq uint64
	if o.f.Seq {
		v, m, err := ParseVLU(pt)
		if err != nil {
			return nil, ErrSequence
		}
		seq = v
		pt = pt[m:]
	}
	if o.f.HMACLen == 0 {
		if len(pt) < 3 {
			return nil, ErrShort
		}
		if binary.BigEndian.Uint16(pt) != Checksum(pt[2:]) {
			return nil, ErrChecksum
		}
		pt = pt[2:]
	}
	if o.f.Seq && !o.replay.accept(seq) {
		return nil, ErrSequence
	}
	return pt, nil
}

// replayWindow rejects duplicate and too-old session sequence numbers.
type replayWindow struct {
	max  uint64
	seen uint64 // bit i: max-i was received
}

const replayWindowSize = 32

func (w *replayWindow) accept(seq uint64) bool {
	switch {
	case seq > w.max:
		shift := seq - w.max
		if shift >= 64 {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.seen |= 1
		w.max = seq
		return true
	case w.max-seq >= replayWindowSize:
		return false
	default:
		bit := uint64(1) << (w.max - seq)
		if w.seen&bit != 0 {
			return false
		}
		w.seen |= bit
		return true
	}
}
