package portal

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/stratus-rtmfp/stratus/store"
)

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "signin", page{Title: "Sign in"})
}

const badSecret = "That secret does not sign in to any account. It is the line starting with s1. shown once when you signed up."

// postedSignin checks a sign-in form (a developer's or the operator's:
// they share the per-network budget of attempts); on failure it answers
// the request and returns false.
func (p *Portal) postedSignin(w http.ResponseWriter, r *http.Request) bool {
	if !p.postedForm(w, r) {
		return false
	}
	if !p.signins.Allow(p.clientIP(r), p.cfg.Now()) {
		p.fail(w, r, http.StatusTooManyRequests, "Too many sign-in attempts from your network: wait a minute.")
		return false
	}
	return true
}

func (p *Portal) signin(w http.ResponseWriter, r *http.Request) {
	if !p.postedSignin(w, r) {
		return
	}
	acct, ok := p.checkSecret(r.PostFormValue("secret"))
	if !ok {
		p.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Error: badSecret})
		return
	}
	p.signIn(w, r, acct.ID, false)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

func (p *Portal) signout(w http.ResponseWriter, r *http.Request) {
	if !p.postedForm(w, r) {
		return
	}
	if id := p.cookie(r, "stratus_session"); id != "" {
		p.sessions.end(id)
	}
	p.setCookie(w, r, "stratus_session", "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// noAccountHash is compared with when a secret names no account, so that
// the answer takes the same work as for a wrong secret.
var noAccountHash = make([]byte, sha256.Size)

// checkSecret finds the account a secret signs in. Every failure reads
// the same, so the form tells nobody whether an account exists.
func (p *Portal) checkSecret(secret string) (store.Account, bool) {
	id, random, ok := splitSecret(strings.TrimSpace(secret))
	if !ok {
		return store.Account{}, false
	}
	a, err := p.cfg.Accounts.GetAccount(id)
	want := a.SecretHash
	if err != nil {
		want = noAccountHash
	}
	if subtle.ConstantTimeCompare(want, secretHash(random)) != 1 || err != nil {
		return store.Account{}, false
	}
	return a, true
}
