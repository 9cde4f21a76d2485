package membership_test

import (
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/membership/membershiptest"
)

func TestLocalConformance(t *testing.T) {
	membershiptest.Run(t, func(t *testing.T, hs []membership.Handler) []membershiptest.Node {
		return []membershiptest.Node{{Dir: membership.NewLocal(membership.DefaultPolicy, hs[0])}}
	})
}
