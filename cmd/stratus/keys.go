package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratus-rtmfp/stratus/store"
)

const keysUsage = `usage: stratus keys <create [--name N] | list | revoke KEY | show KEY> [--data DIR] [--admin ADDR:PORT] [--admin-token-file FILE] [--config FILE]

Works on the data directory; while the server runs (and holds it locked)
the same commands go through its admin API.
`

type keyView struct {
	store.Key
	Usage store.Usage `json:"usage"`
}

func runKeys(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, keysUsage)
		return errors.New("missing keys command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("keys "+cmd, flag.ContinueOnError)
	data := fs.String("data", defaultData, "data directory")
	admin := fs.String("admin", "", "admin API of a running server, used when the data directory is locked (default: what the server recorded in the data directory, else "+defaultAdmin+")")
	name := fs.String("name", "", "name of the new key (create)")
	jsonOut := fs.Bool("json", false, "print JSON")
	config := fs.String("config", "", "the server's config file (for data, admin and admin-token-file)")
	tokenFile := fs.String("admin-token-file", "", "the admin API's token (default DATA/admin.token)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), keysUsage); fs.PrintDefaults() }
	// Accept KEY before or after the flags.
	var rest []string
	flagArgs := args[1:]
	for len(flagArgs) > 0 {
		if err := fs.Parse(flagArgs); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		flagArgs = fs.Args()[1:]
	}
	// The same settings as the server: STRATUS_DATA, STRATUS_ADMIN, --config.
	if err := applySettingsFrom(fs, *config, false); err != nil {
		return err
	}
	needKey := cmd == "revoke" || cmd == "show"
	if needKey != (len(rest) == 1) || !needKey && len(rest) > 0 {
		fs.Usage()
		return errors.New("wrong arguments")
	}
	var c keyClient
	dbPath := filepath.Join(*data, "stratus.db")
	if _, err := os.Stat(dbPath); err != nil && cmd != "create" {
		return fmt.Errorf("no Stratus database at %s (set --data, STRATUS_DATA or --config to the server's data directory)", dbPath)
	}
	st, err := store.OpenBolt(*data, 200*time.Millisecond)
	switch {
	case err == nil:
		defer st.Close()
		c = localKeys{st}
		if m, ok := readClusterMarker(*data); ok {
			// A cluster node that is not running: its copy of the
			// cluster's keys may be stale, and changing it would not
			// change the cluster's.
			if cmd == "create" || cmd == "revoke" {
				return fmt.Errorf("%s is the data directory of cluster node %q (cluster %q), which is not running: its keys are the cluster's; "+
					"run this against a running node (its data directory, or --admin ADDR:PORT --admin-token-file FILE)", *data, m.Node, m.Cluster)
			}
			fmt.Fprintf(os.Stderr, "note: cluster node %q is not running; this is its copy of the cluster's keys as of its last run, with its own usage only\n", m.Node)
		}
	case errors.Is(err, store.ErrLocked):
		addr := *admin
		if addr == "" {
			addr = defaultAdmin
			if b, err := os.ReadFile(filepath.Join(*data, adminAddrFile)); err == nil {
				addr = strings.TrimSpace(string(b))
			}
		}
		tok, err := readToken(adminTokenPath(*data, *tokenFile))
		if err != nil {
			return fmt.Errorf("the data directory is in use by a running server, and its admin API token cannot be read (set --admin-token-file): %w", err)
		}
		c = remoteKeys{base: "http://" + addr, token: tok}
	default:
		return err
	}
	switch cmd {
	case "create":
		k, err := c.create(*name)
		if err != nil {
			return err
		}
		if _, remote := c.(remoteKeys); remote {
			fmt.Fprintln(os.Stderr, "created through the running server's admin API")
		} else {
			fmt.Fprintf(os.Stderr, "created in %s\n", dbPath)
		}
		return printKeys(*jsonOut, []keyView{k}, false)
	case "list":
		ks, err := c.list()
		if err != nil {
			return err
		}
		return printKeys(*jsonOut, ks, true)
	case "show":
		k, err := c.show(rest[0])
		if err != nil {
			return err
		}
		return printKeys(*jsonOut, []keyView{k}, true)
	case "revoke":
		k, err := c.revoke(rest[0])
		if err != nil {
			return err
		}
		return printKeys(*jsonOut, []keyView{k}, false)
	}
	fs.Usage()
	return fmt.Errorf("unknown keys command %q", cmd)
}

func printKeys(asJSON bool, ks []keyView, usage bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ks)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if usage {
		fmt.Fprintln(w, "KEY\tNAME\tCREATED\tSTATE\tCONNECTS\tREJECTED\tINTRODUCTIONS\tRELAYS\tSESSION-TIME\tLAST SEEN")
	} else {
		fmt.Fprintln(w, "KEY\tNAME\tCREATED\tSTATE")
	}
	for _, k := range ks {
		state := "active"
		if k.Revoked {
			state = "revoked " + k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s", k.ID, k.Name, k.Created.Format(time.RFC3339), state)
		if usage {
			last := "-"
			if !k.Usage.LastSeen.IsZero() {
				last = k.Usage.LastSeen.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "\t%d\t%d\t%d\t%d\t%s\t%s", k.Usage.Connects, k.Usage.Rejected, k.Usage.Introductions, k.Usage.Relays,
				time.Duration(k.Usage.SessionSeconds)*time.Second, last)
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

type keyClient interface {
	create(name string) (keyView, error)
	list() ([]keyView, error)
	show(id string) (keyView, error)
	revoke(id string) (keyView, error)
}

type localKeys struct{ st store.Store }

func (l localKeys) create(name string) (keyView, error) {
	k, err := l.st.CreateKey(name)
	return keyView{Key: k}, err
}

func (l localKeys) list() ([]keyView, error) {
	ks, err := l.st.ListKeys()
	out := make([]keyView, 0, len(ks))
	for _, k := range ks {
		u, _ := l.st.Usage(k.ID)
		out = append(out, keyView{k, u})
	}
	return out, err
}

func (l localKeys) show(id string) (keyView, error) {
	k, err := l.st.GetKey(id)
	if err != nil {
		return keyView{}, fmt.Errorf("%s: %w", id, err)
	}
	u, err := l.st.Usage(id)
	return keyView{k, u}, err
}

func (l localKeys) revoke(id string) (keyView, error) {
	k, err := l.st.RevokeKey(id)
	if err != nil {
		return keyView{}, fmt.Errorf("%s: %w", id, err)
	}
	return keyView{Key: k}, nil
}

// remoteKeys talks to a running server's admin API.
type remoteKeys struct{ base, token string }

func (r remoteKeys) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("the data directory is in use by a running server, and its admin API did not answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (r remoteKeys) create(name string) (k keyView, err error) {
	err = r.do("POST", "/api/keys", map[string]string{"name": name}, &k)
	return
}

func (r remoteKeys) list() (ks []keyView, err error) {
	err = r.do("GET", "/api/keys", nil, &ks)
	return
}

func (r remoteKeys) show(id string) (k keyView, err error) {
	err = r.do("GET", "/api/keys/"+id, nil, &k)
	return
}

func (r remoteKeys) revoke(id string) (k keyView, err error) {
	err = r.do("POST", "/api/keys/"+id+"/revoke", nil, &k)
	return
}
