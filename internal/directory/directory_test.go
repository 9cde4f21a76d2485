package directory_test

import (
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/directory/directorytest"
)

func TestLocalConformance(t *testing.T) {
	directorytest.Run(t, func(t *testing.T, hs []directory.Handler) []directorytest.Node {
		return []directorytest.Node{{Dir: directory.NewLocal(hs[0])}}
	})
}
