// Package testvec loads the hex test vectors kept in testdata/ (real Flash
// captures and constructed rendezvous examples; the file says where each
// came from). Test code only.
package testvec

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	once sync.Once
	vecs map[string][]byte
	err  error
)

func load() {
	_, file, _, _ := runtime.Caller(0)
	f, e := os.Open(filepath.Join(filepath.Dir(file), "testdata", "flash-captures.txt"))
	if e != nil {
		err = e
		return
	}
	defer f.Close()
	vecs = map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		b, e := hex.DecodeString(strings.TrimSpace(h))
		if e != nil {
			err = e
			return
		}
		vecs[strings.TrimSpace(name)] = b
	}
	err = sc.Err()
}

// Get returns a copy of the named vector or fails the test.
func Get(t testing.TB, name string) []byte {
	t.Helper()
	once.Do(load)
	if err != nil {
		t.Fatalf("loading test vectors: %v", err)
	}
	v, ok := vecs[name]
	if !ok {
		t.Fatalf("no test vector %q", name)
	}
	return append([]byte(nil), v...)
}

// Hex decodes a literal in a test, ignoring spaces.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, e := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if e != nil {
		t.Fatal(e)
	}
	return b
}
