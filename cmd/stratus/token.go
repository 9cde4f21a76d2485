package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// adminTokenFile, in the data directory, holds the admin API's bearer
// token unless --admin-token-file names another file.
const adminTokenFile = "admin.token"

// minTokenLen keeps operators from configuring a guessable token.
const minTokenLen = 16

func adminTokenPath(data, file string) string {
	if file != "" {
		return file
	}
	return filepath.Join(data, adminTokenFile)
}

// loadOrCreateToken reads the token at path, or creates the file (mode
// 0600) with 32 random bytes in hex when it does not exist yet.
func loadOrCreateToken(path string) (tok string, created bool, err error) {
	tok, err = readToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, false, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	tok = hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("creating the admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, err
	}
	return tok, true, f.Close()
}

// readToken reads an admin token file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token in %s: want one word of at least %d characters", path, minTokenLen)
	}
	return tok, nil
}
