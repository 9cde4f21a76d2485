package bench

import (
	"context"
	"os"
	"testing"
)

// TestBenchSmoke runs each load at a small size so that "stratus bench"
// keeps working; the real figures come from the command.
func TestBenchSmoke(t *testing.T) {
	tg, err := Embedded(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Local.Close()
	ctx := context.Background()
	c, err := Connects(ctx, tg, 200, 4)
	if err != nil || c.Connects != 200 || c.Failures != 0 {
		t.Fatalf("connects: %+v %v", c, err)
	}
	Report(os.Stdout, "connect", c)
	i, err := Idle(ctx, tg, 300, 4)
	if err != nil || i.ServerSessions < 300 {
		t.Fatalf("idle: %+v %v", i, err)
	}
	Report(os.Stdout, "idle", i)
	in, err := Intros(ctx, tg, 500, 4)
	if err != nil || in.Lookups != 500 {
		t.Fatalf("intros: %+v %v", in, err)
	}
	Report(os.Stdout, "intro", in)
}
