package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// The test binary is also the stratus command: with STRATUS_CLI=1 it runs
// main on its arguments, so the CLI is tested as users run it.
func TestMain(m *testing.M) {
	if os.Getenv("STRATUS_CLI") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func stratusCmd(args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), "STRATUS_CLI=1")
	return c
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// The exact forms of issue 9: two "stratus peer listen --group" and one
// "stratus peer post --group ... --count N MESSAGE": post exits 0 after
// its posts, each listener prints each post once with its text (as is:
// no HTML escaping) and its neighbour events. post without MESSAGE, with
// flags after MESSAGE, or with no neighbour to post to exits 1.
func TestPeerPostAndListenCommands(t *testing.T) {
	url := servertest.Start(t, server.Config{Open: true}).URL("key")
	spec := "G:027f02010101000103010c050e74657374011b00"
	type line struct {
		who int
		m   map[string]any
	}
	lines := make(chan line, 100)
	for i := range 2 {
		c := stratusCmd("peer", "listen", "--url", url, "--group", spec, "--duration", "60s")
		out, err := c.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Errorf("listener %d printed %q", i, sc.Text())
					continue
				}
				lines <- line{i, m}
			}
		}()
	}
	waitFor := func(what string, ok func(line) bool) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l := <-lines:
				if ok(l) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s", what)
			}
		}
	}
	waitFor("the listeners' neighbourship", func(l line) bool { return l.m["event"] == "NetGroup.Neighbor.Connect" })

	const msg = "hello <group> & all"
	post := stratusCmd("peer", "post", "--url", url, "--group", spec, "--count", "3", "--interval", "100ms", "--stay", "1s", msg)
	out, err := post.Output()
	if err != nil {
		t.Fatalf("post: %v (exit %d)", err, exitCode(err))
	}
	if n := strings.Count(string(out), `"event":"posted"`); n != 3 {
		t.Fatalf("post printed %d posted lines:\n%s", n, out)
	}
	got := [2]map[string]int{{}, {}}
	timeout := time.After(30 * time.Second)
	for len(got[0]) < 3 || len(got[1]) < 3 {
		select {
		case l := <-lines:
			if l.m["event"] != "NetGroup.Posting.Notify" {
				continue
			}
			if l.m["message"] != msg {
				t.Fatalf("listener %d: %v", l.who, l.m)
			}
			id, _ := l.m["messageID"].(string)
			if got[l.who][id]++; got[l.who][id] > 1 {
				t.Fatalf("listener %d printed post %s twice", l.who, id)
			}
		case <-timeout:
			t.Fatalf("posts printed: %v", got)
		}
	}

	for _, args := range [][]string{
		{"peer", "post", "--url", url, "--group", spec},                          // no MESSAGE
		{"peer", "post", "--url", url, "--group", spec, "hello", "--count", "2"}, // flags after MESSAGE
		{"peer", "post", "--url", url, "--group", "G:027f02010101000103010c060e616c6f6e65011b00", "--timeout", "500ms", "alone"},
	} {
		if err := stratusCmd(args...).Run(); exitCode(err) != 1 {
			t.Errorf("%v: exit %d, want 1", args[1:], exitCode(err))
		}
	}
}
