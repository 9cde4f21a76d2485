package rtmfp

import (
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// The public constants are spelled out for readers of the documentation;
// they must stay equal to the wire package's.
func TestPublicConstantsMatchFlash(t *testing.T) {
	pairs := [][2]string{
		{ConnectSuccess, flash.ConnectSuccess}, {ConnectFailed, flash.ConnectFailed}, {ConnectRejected, flash.ConnectRejected},
		{ConnectClosed, flash.ConnectClosed}, {ConnectNetworkChange, flash.ConnectNetworkChange},
		{ConnectAppShutdown, flash.ConnectAppShutdown}, {CallFailed, flash.CallFailed},
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("%q != %q", p[0], p[1])
		}
	}
	if KindAudio != flash.TypeAudio || KindVideo != flash.TypeVideo || KindData != flash.TypeData {
		t.Error("media kinds differ from the TC message types")
	}
}
