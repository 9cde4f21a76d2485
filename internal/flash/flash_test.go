package flash

import (
	"testing"

	"github.com/stratus-rtmfp/stratus/amf"
)

func TestCommandArguments(t *testing.T) {
	for _, c := range []struct {
		obj  any
		args []any
		want int
	}{
		{nil, []any{"a", "b"}, 2},         // Flash: null command object
		{amf.Undefined{}, []any{"a"}, 1},  // undefined likewise
		{"a", []any{"b"}, 2},              // librtmfp: no null, first argument in its place
		{amf.NewObject("x", 1.0), nil, 1}, // an object is kept too
	} {
		got := Command{Object: c.obj, Args: c.args}.Arguments()
		if len(got) != c.want {
			t.Errorf("object %v args %v: %v", c.obj, c.args, got)
		}
	}
}
