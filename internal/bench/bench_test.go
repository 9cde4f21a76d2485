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
	// Many groups per client, as the command's defaults (100 each): the
	// embedded server must not refuse them (limits, budget).
	g, err := Groups(ctx, tg, GroupsConfig{Members: 2000, Groups: 50, Clients: 100, Concurrency: 4})
	if err != nil || g.Joins != 2000-50 || g.Failures != 0 {
		t.Fatalf("groups: %+v %v", g, err)
	}
	Report(os.Stdout, "groups", g)
}

// A thousand members joining one group over UDP, each from its own
// session, hand-made GC flows and all: every join after the first is
// answered with bootstrap messages, no join causes more than the policy's
// bound (10) by the clients' own count (one join at a time, so that each
// message is the join's it counts for), and what the clients received is
// exactly what the server sent.
func TestGroupsThousandMembers(t *testing.T) {
	tg, err := Embedded(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Local.Close()
	r, err := Groups(context.Background(), tg, GroupsConfig{Members: 1000, Groups: 1, Clients: 1000, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	Report(os.Stdout, "groups", r)
	if r.Joins != 999 || r.Failures != 0 {
		t.Fatalf("%+v", r)
	}
	if r.MaxPerJoin != 10 {
		t.Fatalf("at most %d messages received for one join, want 10 (4 + 4 ring neighbours, 2 random)", r.MaxPerJoin)
	}
	if sent := tg.groupMessages(); float64(r.Messages) != sent || sent > 10*999 {
		t.Fatalf("received %d, server sent %v", r.Messages, sent)
	}
	if ov := tg.Local.Groups(1); ov.Groups != 1 || ov.Members != 1000 {
		t.Fatalf("%+v", ov)
	}
}
