package clusterhook

import (
	"errors"
	"testing"
)

// A program that does not link the cluster gets a clear error, naming the
// package to import.
func TestStartWithoutCluster(t *testing.T) {
	if _, err := Start(Config{}, nil); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("Start = %v, want ErrNotLinked", err)
	}
}
