package wire

import (
	"encoding/binary"
	"net/netip"
)

// Address origins (the low two bits of the address flags byte).
const (
	OriginUnknown  byte = 0
	OriginReported byte = 1 // reported by its owner (setPeerInfo): "local"
	OriginObserved byte = 2 // observed by a third party: "public"
	OriginRelay    byte = 3 // a redirect target
)

const addrFlagIPv6 = 0x80

// Address is an RTMFP socket address with its origin.
type Address struct {
	AddrPort netip.AddrPort
	Origin   byte
}

// AddressLen is the encoded length of ap: 7 bytes for IPv4 (including
// IPv4-mapped IPv6), 19 for IPv6.
func AddressLen(ap netip.AddrPort) int {
	if ap.Addr().Unmap().Is4() {
		return 7
	}
	return 19
}

// AppendAddress appends the RTMFP encoding of ap with the given origin.
// IPv4-mapped IPv6 addresses are written in the 4-byte form. The IPv6 zone
// cannot be encoded and is dropped.
func AppendAddress(b []byte, ap netip.AddrPort, origin byte) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b = append(b, origin&0x03)
		v4 := a.As4()
		b = append(b, v4[:]...)
	} else {
		b = append(b, addrFlagIPv6|origin&0x03)
		v6 := a.As16()
		b = append(b, v6[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// ParseAddress decodes one address at the start of b.
func ParseAddress(b []byte) (Address, int, error) {
	if len(b) < 1 {
		return Address{}, 0, ErrAddress
	}
	flags := b[0]
	if flags&addrFlagIPv6 != 0 {
		if len(b) < 19 {
			return Address{}, 0, ErrAddress
		}
		ip := netip.AddrFrom16([16]byte(b[1:17]))
		port := binary.BigEndian.Uint16(b[17:19])
		return Address{netip.AddrPortFrom(ip, port), flags & 0x03}, 19, nil
	}
	if len(b) < 7 {
		return Address{}, 0, ErrAddress
	}
	ip := netip.AddrFrom4([4]byte(b[1:5]))
	port := binary.BigEndian.Uint16(b[5:7])
	return Address{netip.AddrPortFrom(ip, port), flags & 0x03}, 7, nil
}

// ParseAddressList decodes addresses until the end of b. max bounds the
// number kept (the rest are skipped, not an error); 0 means no bound.
func ParseAddressList(b []byte, max int) ([]Address, error) {
	var out []Address
	for len(b) > 0 {
		a, n, err := ParseAddress(b)
		if err != nil {
			return out, err
		}
		if max == 0 || len(out) < max {
			out = append(out, a)
		}
		b = b[n:]
	}
	return out, nil
}
