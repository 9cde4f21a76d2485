package rtmfp_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// String gives what Flash's GroupSpecifier gives for the same settings
// (docs/netgroup.md §1), whatever order they were set in.
func TestGroupSpecifierLikeFlash(t *testing.T) {
	g := rtmfp.NewGroupSpecifier("test")
	g.IPMulticastMemberUpdatesEnabled = true
	g.ServerChannelEnabled = true
	g.PostingEnabled = true
	g.MulticastEnabled = true
	g.RoutingEnabled = true
	if s := g.String(); s != "G:027f02010001010103010c050e74657374011b00" {
		t.Fatal(s)
	}
	c := rtmfp.NewGroupSpecifier("chat")
	c.PostingEnabled, c.ServerChannelEnabled = true, true
	c.SetPostingPassword("secret", "")
	with, without := c.GroupspecWithAuthorizations(), c.GroupspecWithoutAuthorizations()
	if with != "G:027f02010321072bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b010c050e63686174000717736563726574" ||
		with != c.String() || !strings.HasPrefix(with, without) || c.Authorizations() != "0717736563726574" {
		t.Fatal(with, without, c.Authorizations())
	}
	// Same group with or without the passwords.
	id1, _ := rtmfp.GroupID(with)
	id2, _ := rtmfp.GroupID(without)
	if id1 != id2 || id1 != "a00386f4027cfc21c1c33098307e59b2542ab775b9a0962aa65cec9003ee5aa2" {
		t.Fatal(id1, id2)
	}
	c.SetPostingPassword("", "")
	if strings.Contains(c.String(), "2107") {
		t.Fatal("password not removed")
	}
	c.MakeUnique()
	if err := c.AddBootstrapPeer(strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}
	c.AddIPMulticastAddress(netip.MustParseAddrPort("224.0.0.254:33099"), netip.Addr{})
	back, err := rtmfp.ParseGroupSpecifier(c.String())
	if err != nil || back.String() != c.String() || back.BootstrapPeers()[0] != strings.Repeat("ab", 32) {
		t.Fatal(err, back)
	}
}

// Parsing takes Flash's and librtmfp's strings, including the librtmfp
// test groupspec (its options in an order Flash never writes).
func TestParseGroupSpecifier(t *testing.T) {
	g, err := rtmfp.ParseGroupSpecifier("G:027f02010101000103010c050e74657374011b00")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "test" || g.MinGroupspecVersion != 2 || !g.MulticastEnabled || !g.RoutingEnabled || !g.PostingEnabled ||
		!g.ServerChannelEnabled || !g.IPMulticastMemberUpdatesEnabled || g.ObjectReplicationEnabled || g.PeerToPeerDisabled {
		t.Fatalf("%+v", g)
	}
	if id, _ := rtmfp.GroupID("G:027f02010101000103010c050e74657374011b00"); id != "c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9" {
		t.Fatal(id)
	}
	if _, err := rtmfp.ParseGroupSpecifier("G:0e"); err == nil {
		t.Fatal("truncated groupspec parsed")
	}
	if a, _ := rtmfp.ConvertPeerIDToGroupAddress("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"); a != "b899a498e581c1b05a163df2329c20db35411de8eeeed68e12ecdc2ba9e15ebc" {
		t.Fatal(a)
	}
}
