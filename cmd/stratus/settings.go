package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
)

// applySettings fills every flag not given on the command line from the
// environment (STRATUS_ + the flag name in upper case with '-' as '_';
// repeatable flags take comma-separated values) or, failing that, from the
// config file (lines "name = value"; '#' starts a comment; repeat a line
// for repeatable flags). Command line beats environment beats file.
func applySettings(fs *flag.FlagSet, configFile string) error {
	return applySettingsFrom(fs, configFile, true)
}

// applySettingsFrom is applySettings; when strict is false, settings the
// flag set does not have are skipped (stratus keys reads the server's config
// file for the data directory and admin address only).
func applySettingsFrom(fs *flag.FlagSet, configFile string, strict bool) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	file := map[string][]string{}
	if configFile != "" {
		f, err := os.Open(configFile)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			if line == "" {
				continue
			}
			name, value, ok := strings.Cut(line, "=")
			name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
			if !ok || name == "config" {
				return fmt.Errorf("%s:%d: not a \"name = value\" line", configFile, n)
			}
			if fs.Lookup(name) == nil {
				if strict {
					return fmt.Errorf("%s:%d: unknown setting %q", configFile, n, name)
				}
				continue
			}
			file[name] = append(file[name], value)
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || f.Name == "config" {
			return
		}
		env := "STRATUS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		var values []string
		if v, ok := os.LookupEnv(env); ok {
			if _, repeat := f.Value.(*listFlag); repeat {
				values = strings.Split(v, ",")
			} else {
				values = []string{v}
			}
		} else if v, ok := file[f.Name]; ok {
			values = v
		}
		for _, v := range values {
			if e := fs.Set(f.Name, strings.TrimSpace(v)); e != nil {
				err = fmt.Errorf("%s: %w", f.Name, e)
				return
			}
		}
	})
	return err
}
