package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "stratus.conf")
	os.WriteFile(conf, []byte(`# comment
data = /from/file
admin = 127.0.0.1:1
listen = 127.0.0.1:1935
listen = [::1]:1935
client-keepalive = 20s   # trailing comment
open = true
`), 0o600)
	t.Setenv("STRATUS_ADMIN", "127.0.0.1:2")
	t.Setenv("STRATUS_PUBLIC_ADDRESS", "203.0.113.1:1935,203.0.113.2:1935")
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cfg, o := serverFlags(fs)
	if err := fs.Parse([]string{"--data", "/from/flag", "--config", conf}); err != nil {
		t.Fatal(err)
	}
	if err := applySettings(fs, o.config); err != nil {
		t.Fatal(err)
	}
	if o.data != "/from/flag" || o.admin != "127.0.0.1:2" || len(o.listen) != 2 || o.listen[1] != "[::1]:1935" ||
		cfg.ClientKeepalive != 20*time.Second || !cfg.Open || len(o.public) != 2 {
		t.Fatalf("data %q admin %q listen %v keepalive %v open %v public %v", o.data, o.admin, o.listen, cfg.ClientKeepalive, cfg.Open, o.public)
	}
	os.WriteFile(conf, []byte("no-such-setting = 1\n"), 0o600)
	fs2 := flag.NewFlagSet("server", flag.ContinueOnError)
	_, o2 := serverFlags(fs2)
	fs2.Parse([]string{"--config", conf})
	if err := applySettings(fs2, o2.config); err == nil {
		t.Fatal("unknown setting accepted")
	}
}

func TestKeysUseTheServersSettings(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STRATUS_DATA", filepath.Join(dir, "var-lib"))
	// list on a directory with no database refuses instead of creating one.
	if err := runKeys([]string{"list"}); err == nil {
		t.Fatal("keys list created or read a database that does not exist")
	}
	if err := runKeys([]string{"create", "--name", "k1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "var-lib", "stratus.db")); err != nil {
		t.Fatal("create ignored STRATUS_DATA:", err)
	}
	if err := runKeys([]string{"list"}); err != nil {
		t.Fatal(err)
	}
}
