package rtmfp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the SDK starts ends when its NetConnection closes.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
