package rtmfp

import (
	"encoding/hex"
	"testing"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// The info object is found where Flash and Cirrus put it (after a null
// command object) and where librtmfp puts it (as the command object).
func TestStatusOfLayouts(t *testing.T) {
	// What librtmfp 2.15.3's P2P publisher sent a subscriber of "s5"
	// (captured from its TestClient --p2pWrite): onStatus, 0, {info}.
	librtmfp, _ := hex.DecodeString("14000000000200086f6e5374617475730000000000000000000300056c6576656c0200067374617475730004636f64650200144e657453747265616d2e506c61792e5374617274000b6465736372697074696f6e0200125374617274656420706c6179696e67207335000009")
	flashLayout, _ := flash.AppendCommand(nil, "onStatus", 0, nil, flash.Info(flash.LevelStatus, PlayStart, "Started playing s5"))
	withProps, _ := flash.AppendCommand(nil, "_result", 1, amf.NewObject("fmsVer", "FMS/3,5,1,516"), flash.Info(flash.LevelStatus, ConnectSuccess, "ok"))
	for _, c := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"librtmfp", librtmfp, PlayStart},
		{"flash", flashLayout, PlayStart},
		{"properties then info", withProps, ConnectSuccess},
	} {
		m, err := flash.ParseMessage(c.raw)
		if err != nil {
			t.Fatal(c.name, err)
		}
		cmd, err := flash.ParseCommand(m)
		if err != nil {
			t.Fatal(c.name, err)
		}
		if st := statusOf(cmd.Arguments()); st.Code != c.want {
			t.Errorf("%s: status %q, want %q", c.name, st.Code, c.want)
		}
	}
}
