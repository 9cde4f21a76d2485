package portal

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/stratus-rtmfp/stratus/store"
)

type accountRow struct {
	store.Account
	Keys, Active int
}

type operatorData struct {
	Accounts []accountRow
	Keys     []keyRow
	Owners   map[string]string // account ID -> name
}

// isOperator reports whether the request is the signed-in operator's.
func (p *Portal) isOperator(r *http.Request) bool {
	s := p.session(r)
	return s != nil && s.operator
}

func (p *Portal) operator(w http.ResponseWriter, r *http.Request) {
	if !p.isOperator(r) {
		p.render(w, r, http.StatusOK, "operator-signin", page{Title: "Operator sign-in"})
		return
	}
	accts, err := p.cfg.Accounts.ListAccounts()
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "The accounts could not be read.")
		return
	}
	keys, err := p.cfg.Server.Keys()
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "The keys could not be read.")
		return
	}
	d := operatorData{Owners: map[string]string{}}
	idx := map[string]int{}
	for i, a := range accts {
		a.SecretHash = nil
		d.Accounts = append(d.Accounts, accountRow{Account: a})
		d.Owners[a.ID] = a.Name
		idx[a.ID] = i
	}
	for _, k := range keys {
		d.Keys = append(d.Keys, p.keyRow(r, k))
		if i, ok := idx[k.Account]; ok {
			d.Accounts[i].Keys++
			if !k.Revoked {
				d.Accounts[i].Active++
			}
		}
	}
	notice := ""
	switch r.URL.Query().Get("done") {
	case "suspend":
		notice = "Account suspended: its keys are refused and their sessions closed."
	case "reinstate":
		notice = "Account reinstated."
	case "quota":
		notice = "Quota saved."
	}
	p.render(w, r, http.StatusOK, "operator", page{Title: "Operator", Notice: notice, Data: d})
}

// operatorSignin takes the admin token. Sign-in attempts share the
// per-network budget with developers' sign-ins.
func (p *Portal) operatorSignin(w http.ResponseWriter, r *http.Request) {
	if !p.postedSignin(w, r) {
		return
	}
	if !p.adminTok.Matches(strings.TrimSpace(r.PostFormValue("token"))) {
		p.render(w, r, http.StatusUnauthorized, "operator-signin", page{Title: "Operator sign-in", Error: "That is not the admin token."})
		return
	}
	p.signIn(w, r, "", true)
	http.Redirect(w, r, "/operator", http.StatusSeeOther)
}

// postedOperator checks an operator's form.
func (p *Portal) postedOperator(w http.ResponseWriter, r *http.Request) bool {
	if !p.isOperator(r) {
		p.fail(w, r, http.StatusForbidden, "Sign in as the operator first.")
		return false
	}
	return p.postedForm(w, r)
}

func (p *Portal) operatorAccount(w http.ResponseWriter, r *http.Request) {
	if !p.postedOperator(w, r) {
		return
	}
	action := r.PathValue("action")
	if action != "suspend" && action != "reinstate" {
		p.fail(w, r, http.StatusNotFound, "No such action.")
		return
	}
	id := r.PathValue("id")
	if _, err := p.cfg.Accounts.SuspendAccount(id, action == "suspend"); err != nil {
		p.fail(w, r, http.StatusNotFound, "No such account.")
		return
	}
	keys, _ := p.cfg.Accounts.AccountKeys(id)
	for _, k := range keys {
		p.cfg.Server.KeyChanged(k.ID) // suspended keys' sessions close
	}
	p.log.Info("portal: operator", "account", id, "action", action)
	http.Redirect(w, r, "/operator?done="+action, http.StatusSeeOther)
}

// maxQuota bounds what the quota field accepts.
const maxQuota = 10_000_000

func (p *Portal) operatorQuota(w http.ResponseWriter, r *http.Request) {
	if !p.postedOperator(w, r) {
		return
	}
	v := strings.TrimSpace(r.PostFormValue("max_sessions"))
	n, err := strconv.Atoi(v)
	if v == "" {
		n, err = 0, nil
	}
	if err != nil || n < 0 || n > maxQuota || len(v) > 9 {
		p.fail(w, r, http.StatusBadRequest, "The quota must be a whole number from 0 (the server's default) to 10000000.")
		return
	}
	id := r.PathValue("key")
	if _, err := p.cfg.Accounts.SetKeyLimit(id, n); err != nil {
		p.fail(w, r, http.StatusNotFound, "No such key.")
		return
	}
	p.cfg.Server.KeyChanged(id)
	http.Redirect(w, r, "/operator?done=quota", http.StatusSeeOther)
}
