package rtmfp

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"

	"github.com/stratus-rtmfp/stratus/internal/group"
)

// GroupSpecifier builds and reads groupspec strings, as ActionScript's
// flash.net.GroupSpecifier: String gives the same "G:…" text Flash's
// toString() and groupspecWithAuthorizations() give for the same
// settings, options in Flash's fixed order.
//
// A group is identified by its groupspec text, not by its settings: two
// strings with the same settings in another option order are two groups.
// NewNetGroup takes the text as given.
type GroupSpecifier struct {
	Name string
	// MinGroupspecVersion is 2 for Flash Player 11.5+ SWFs (the default
	// of NewGroupSpecifier), which hashes the group ID twice.
	MinGroupspecVersion             int
	ServerChannelEnabled            bool
	PostingEnabled                  bool
	MulticastEnabled                bool
	RoutingEnabled                  bool
	ObjectReplicationEnabled        bool
	PeerToPeerDisabled              bool
	IPMulticastMemberUpdatesEnabled bool

	unique                           []byte
	publishHash, postingHash         []byte
	publishPassword, postingPassword string
	bootstrap                        [][32]byte
	ipMulticast                      []group.IPMulticastAddr
}

// NewGroupSpecifier starts a groupspec for a group name (non-empty), with
// MinGroupspecVersion 2 as Flash Player 11.5+ makes it.
func NewGroupSpecifier(name string) *GroupSpecifier {
	return &GroupSpecifier{Name: name, MinGroupspecVersion: 2}
}

// ParseGroupSpecifier reads a groupspec string (Flash's, librtmfp's, or
// String's).
func ParseGroupSpecifier(s string) (*GroupSpecifier, error) {
	sp, err := group.ParseSpec(s)
	if err != nil {
		return nil, err
	}
	g := &GroupSpecifier{Name: sp.Name, MinGroupspecVersion: int(min(sp.Version, 1<<20)),
		ServerChannelEnabled: sp.ServerChannel, PostingEnabled: sp.Posting, MulticastEnabled: sp.Multicast,
		RoutingEnabled: sp.Routing, ObjectReplicationEnabled: sp.ObjectReplication, PeerToPeerDisabled: sp.PeerToPeerDisabled,
		IPMulticastMemberUpdatesEnabled: sp.IPMulticastMemberUpdates, unique: sp.Unique,
		publishHash: sp.PublishHash, postingHash: sp.PostingHash, publishPassword: sp.PublishAuth, postingPassword: sp.PostingAuth,
		bootstrap: sp.BootstrapPeers, ipMulticast: sp.IPMulticast}
	return g, nil
}

func (g *GroupSpecifier) spec() group.Spec {
	return group.Spec{Version: uint64(max(g.MinGroupspecVersion, 0)), Routing: g.RoutingEnabled, Multicast: g.MulticastEnabled,
		ObjectReplication: g.ObjectReplicationEnabled, Posting: g.PostingEnabled, PublishHash: g.publishHash, PostingHash: g.postingHash,
		ServerChannel: g.ServerChannelEnabled, PeerToPeerDisabled: g.PeerToPeerDisabled, Name: g.Name, Unique: g.unique,
		IPMulticastMemberUpdates: g.IPMulticastMemberUpdatesEnabled, IPMulticast: g.ipMulticast, BootstrapPeers: g.bootstrap,
		PublishAuth: g.publishPassword, PostingAuth: g.postingPassword}
}

// MakeUnique adds 32 random bytes to the group's identity, so that no
// other group has the same groupspec.
func (g *GroupSpecifier) MakeUnique() {
	g.unique = make([]byte, 32)
	rand.Read(g.unique)
}

// SetPublishPassword protects publishing in the group (its SHA-256, salted
// if salt is not empty, is part of the group's identity; the password
// itself travels only in the authorizations). An empty password removes
// it.
func (g *GroupSpecifier) SetPublishPassword(password, salt string) {
	g.publishPassword, g.publishHash = password, nil
	if password != "" {
		g.publishHash = group.PasswordHash(password, salt)
	}
}

// SetPostingPassword protects posting in the group, like
// SetPublishPassword.
func (g *GroupSpecifier) SetPostingPassword(password, salt string) {
	g.postingPassword, g.postingHash = password, nil
	if password != "" {
		g.postingHash = group.PasswordHash(password, salt)
	}
}

// AddBootstrapPeer names a peer to connect to first (its 64-hex-digit
// ID).
func (g *GroupSpecifier) AddBootstrapPeer(peerID string) error {
	id, err := ParsePeerID(peerID)
	if err != nil {
		return err
	}
	g.bootstrap = append(g.bootstrap, id)
	return nil
}

// BootstrapPeers lists the bootstrap peers' IDs.
func (g *GroupSpecifier) BootstrapPeers() []string {
	var out []string
	for _, id := range g.bootstrap {
		out = append(out, hex.EncodeToString(id[:]))
	}
	return out
}

// AddIPMulticastAddress adds an IP multicast address (with an optional
// source). It is carried in the groupspec; this SDK does not use IP
// multicast itself.
func (g *GroupSpecifier) AddIPMulticastAddress(addr netip.AddrPort, source netip.Addr) {
	g.ipMulticast = append(g.ipMulticast, group.IPMulticastAddr{Addr: addr, Source: source})
}

// String is GroupspecWithAuthorizations, as toString() in ActionScript.
func (g *GroupSpecifier) String() string { return g.GroupspecWithAuthorizations() }

// GroupspecWithAuthorizations is the groupspec with the publish and
// posting passwords, for members allowed to publish or post.
func (g *GroupSpecifier) GroupspecWithAuthorizations() string { return g.spec().Encode(true) }

// GroupspecWithoutAuthorizations is the groupspec without passwords: the
// same group, for members that only receive.
func (g *GroupSpecifier) GroupspecWithoutAuthorizations() string { return g.spec().Encode(false) }

// Authorizations is the hex of the authorization options alone (what
// GroupspecWithAuthorizations adds).
func (g *GroupSpecifier) Authorizations() string {
	return hex.EncodeToString(g.spec().AppendAuthorizations(nil))
}

// GroupID is the group ID the server sees for a groupspec string (64 hex
// digits): SHA-256 of its text up to the end of the hashed options,
// twice for version 2 groupspecs.
func GroupID(groupspec string) (string, error) {
	id, err := group.IdentityOf(groupspec)
	if err != nil {
		return "", err
	}
	return id.HexID(), nil
}

// ConvertPeerIDToGroupAddress gives a peer's position on group rings (64
// hex digits): SHA-256 of 21 0f ‖ peer ID.
func ConvertPeerIDToGroupAddress(peerID string) (string, error) {
	id, err := ParsePeerID(peerID)
	if err != nil {
		return "", err
	}
	return group.AddressOf(id).String(), nil
}
