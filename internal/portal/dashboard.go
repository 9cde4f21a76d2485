package portal

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/stratus-rtmfp/stratus/store"
)

// keyRow is one key on the dashboard or the operator's page.
type keyRow struct {
	store.Key
	Usage store.Usage
	Live  int
	Names int
	URL   string
	State string
}

func (p *Portal) keyRow(r *http.Request, k store.Key) keyRow {
	_, u, _ := p.cfg.Server.KeyUsage(k.ID)
	state := "active"
	switch {
	case k.Revoked:
		state = "revoked"
	case k.Suspended:
		state = "suspended"
	}
	return keyRow{Key: k, Usage: u, Live: p.cfg.Server.LiveSessions(k.ID), Names: p.cfg.Server.ExchangeNames(k.ID),
		URL: p.rtmfpURL(r, k.ID), State: state}
}

type dashboardData struct {
	Account     store.Account
	ConnectBase string // rtmfp://HOST[:PORT]/
	Keys        []keyRow
	Active      int
	MaxKeys     int // active
	MaxTotal    int // revoked ones included
	Chart       template.HTML
	Hours       []store.UsageSample // hours with activity, for the table under the chart
}

// account returns the signed-in developer's account, or answers the
// request (sign-in page, or an error) and returns false.
func (p *Portal) account(w http.ResponseWriter, r *http.Request) (store.Account, bool) {
	s := p.session(r)
	if s == nil || s.account == "" {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return store.Account{}, false
	}
	a, err := p.cfg.Accounts.GetAccount(s.account)
	if err != nil {
		p.fail(w, r, http.StatusNotFound, "This account no longer exists.")
		return store.Account{}, false
	}
	return a, true
}

func (p *Portal) dashboard(w http.ResponseWriter, r *http.Request) {
	a, ok := p.account(w, r)
	if !ok {
		return
	}
	keys, err := p.cfg.Accounts.AccountKeys(a.ID)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "Your keys could not be read.")
		return
	}
	d := dashboardData{Account: a, MaxKeys: store.MaxAccountKeys, MaxTotal: store.MaxAccountKeysTotal, ConnectBase: p.rtmfpURL(r, "")}
	now := p.cfg.Now()
	var hist [][]store.UsageSample
	for _, k := range keys {
		d.Keys = append(d.Keys, p.keyRow(r, k))
		if !k.Revoked {
			d.Active++
		}
		if h, err := p.cfg.Accounts.UsageHistory(k.ID); err == nil {
			hist = append(hist, h)
		}
		// The counters the server has not written yet belong to this
		// hour (it writes every few seconds). Adding them here, rather
		// than flushing, keeps page loads from costing database writes.
		if u := p.cfg.Server.PendingUsage(k.ID); u.Connects > 0 || u.Introductions > 0 {
			hour := now.UTC().Truncate(time.Hour)
			hist = append(hist, []store.UsageSample{{Hour: hour, Connects: u.Connects, Introductions: u.Introductions}})
		}
	}
	d.Hours = sumHistory(hist)
	d.Chart = chartSVG(d.Hours, now)
	notice := ""
	if k := r.URL.Query().Get("created"); k != "" && ownKey(keys, k) {
		notice = "Created key " + k + "."
	}
	if k := r.URL.Query().Get("rotated"); k != "" && ownKey(keys, k) {
		notice = "Rotated: the new key is " + k + ". The old one is revoked and its sessions are closed."
	}
	if k := r.URL.Query().Get("revoked"); k != "" && ownKey(keys, k) {
		notice = "Revoked key " + k + "; its sessions are closed."
	}
	if r.URL.Query().Get("renamed") != "" {
		notice = "Renamed."
	}
	p.render(w, r, http.StatusOK, "dashboard", page{Title: "Dashboard", Notice: notice, Data: d})
}

func ownKey(keys []store.Key, id string) bool {
	for _, k := range keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// postedKeyEdit checks a signed-in developer's form that edits keys:
// size, CSRF, account not suspended, and the account's budget of key
// edits (each is a database write).
func (p *Portal) postedKeyEdit(w http.ResponseWriter, r *http.Request) (store.Account, bool) {
	if p.session(r) == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return store.Account{}, false
	}
	if !p.postedForm(w, r) {
		return store.Account{}, false
	}
	a, ok := p.account(w, r)
	if !ok {
		return a, false
	}
	if a.Suspended {
		p.fail(w, r, http.StatusForbidden, "This account is suspended by the operator.")
		return a, false
	}
	if !p.keyWrites.Allow(a.ID, p.cfg.Now()) {
		p.fail(w, r, http.StatusTooManyRequests, "Too many key changes on this account: wait a few minutes.")
		return a, false
	}
	return a, true
}

// keyLimitMessage words the store's refusals of a new key, or is "" for
// other errors.
func keyLimitMessage(err error) string {
	switch {
	case errors.Is(err, store.ErrTooManyKeys):
		return fmt.Sprintf("You already have the most active keys an account may have (%d); revoke one first.", store.MaxAccountKeys)
	case errors.Is(err, store.ErrKeysUsedUp):
		return fmt.Sprintf("This account has had the most keys an account may have (%d, revoked ones included); ask the operator for a new account.", store.MaxAccountKeysTotal)
	}
	return ""
}

func (p *Portal) createKey(w http.ResponseWriter, r *http.Request) {
	a, ok := p.postedKeyEdit(w, r)
	if !ok {
		return
	}
	name, err := checkText("Key name", r.PostFormValue("name"), maxNameLen)
	if err != nil {
		p.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	k, err := p.cfg.Accounts.CreateAccountKey(a.ID, name)
	if msg := keyLimitMessage(err); msg != "" {
		p.fail(w, r, http.StatusConflict, msg)
		return
	}
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "The key could not be created.")
		return
	}
	p.cfg.Server.KeyChanged(k.ID)
	http.Redirect(w, r, "/dashboard?created="+k.ID, http.StatusSeeOther)
}

// ownedKey returns one of the account's keys; another account's key reads
// as missing.
func (p *Portal) ownedKey(a store.Account, id string) (store.Key, bool) {
	if !store.ValidKeyFormat(id) {
		return store.Key{}, false
	}
	k, _, err := p.cfg.Server.KeyUsage(id)
	if err != nil || k.Account != a.ID {
		return store.Key{}, false
	}
	return k, true
}

type confirmData struct {
	Key    keyRow
	Action string
}

// confirmKeyAction asks before revoking or rotating (without JavaScript
// there is no dialog, so the question is a page of its own), and holds the
// rename form.
func (p *Portal) confirmKeyAction(w http.ResponseWriter, r *http.Request) {
	a, ok := p.account(w, r)
	if !ok {
		return
	}
	action := r.PathValue("action")
	k, ok := p.ownedKey(a, r.PathValue("key"))
	if !ok || k.Revoked || action != "revoke" && action != "rotate" && action != "rename" {
		p.fail(w, r, http.StatusNotFound, "No such key among yours, or it is already revoked.")
		return
	}
	title := map[string]string{"revoke": "Revoke a key", "rotate": "Rotate a key", "rename": "Rename a key"}[action]
	p.render(w, r, http.StatusOK, "confirm", page{Title: title, Data: confirmData{Key: p.keyRow(r, k), Action: action}})
}

func (p *Portal) keyAction(w http.ResponseWriter, r *http.Request) {
	a, ok := p.postedKeyEdit(w, r)
	if !ok {
		return
	}
	k, ok := p.ownedKey(a, r.PathValue("key"))
	if !ok || k.Revoked {
		p.fail(w, r, http.StatusNotFound, "No such key among yours, or it is already revoked.")
		return
	}
	switch r.PathValue("action") {
	case "rename":
		name, err := checkText("Key name", r.PostFormValue("name"), maxNameLen)
		if err != nil {
			p.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		if _, err := p.cfg.Accounts.RenameKey(k.ID, name); err != nil {
			p.fail(w, r, http.StatusBadRequest, "The key could not be renamed.")
			return
		}
		p.cfg.Server.KeyChanged(k.ID)
		http.Redirect(w, r, "/dashboard?renamed=1", http.StatusSeeOther)
	case "revoke":
		if _, err := p.cfg.Server.RevokeKey(k.ID); err != nil {
			p.fail(w, r, http.StatusInternalServerError, "The key could not be revoked.")
			return
		}
		http.Redirect(w, r, "/dashboard?revoked="+k.ID, http.StatusSeeOther)
	case "rotate":
		nk, err := p.cfg.Accounts.RotateKey(k.ID)
		if msg := keyLimitMessage(err); msg != "" {
			p.fail(w, r, http.StatusConflict, msg)
			return
		}
		if err != nil {
			p.fail(w, r, http.StatusInternalServerError, "The key could not be rotated.")
			return
		}
		p.cfg.Server.KeyChanged(nk.ID)
		p.cfg.Server.KeyChanged(k.ID) // revoked: its sessions close
		http.Redirect(w, r, "/dashboard?rotated="+nk.ID, http.StatusSeeOther)
	default:
		p.fail(w, r, http.StatusNotFound, "No such action.")
	}
}

// sumHistory adds up several keys' hourly samples.
func sumHistory(hs [][]store.UsageSample) []store.UsageSample {
	by := map[time.Time]int{} // hour -> index in out
	var out []store.UsageSample
	for _, h := range hs {
		for _, s := range h {
			if i, ok := by[s.Hour]; ok {
				out[i].Connects += s.Connects
				out[i].Introductions += s.Introductions
				continue
			}
			by[s.Hour] = len(out)
			out = append(out, s)
		}
	}
	return sortSamples(out)
}
