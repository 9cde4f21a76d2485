package portal

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
)

// signedUp is what a sign-up returns, on the page and in JSON.
type signedUp struct {
	Account     string `json:"account"`
	Secret      string `json:"secret"`
	Key         string `json:"key"`
	URL         string `json:"url"`
	ExchangeURL string `json:"exchange_url"`
	Dashboard   string `json:"dashboard"`
}

// signup makes the account and its first key.
func (p *Portal) signup(r *http.Request, s Signup) (signedUp, error) {
	random := newSecret()
	acct, err := p.cfg.Accounts.CreateAccount(s.Name, s.Email, secretHash(random))
	if err != nil {
		return signedUp{}, err
	}
	key, err := p.cfg.Accounts.CreateAccountKey(acct.ID, "first key")
	if err != nil {
		return signedUp{}, err
	}
	if err := p.cfg.Server.KeyChanged(key.ID); err != nil {
		return signedUp{}, err
	}
	p.log.Info("portal: sign-up", "account", acct.ID, "key", key.ID, "from", p.clientIP(r).String())
	return signedUp{Account: acct.ID, Secret: formatSecret(acct.ID, random), Key: key.ID,
		URL: p.rtmfpURL(r, key.ID), ExchangeURL: p.baseURL(r) + "/exchange/" + key.ID, Dashboard: p.baseURL(r) + "/dashboard"}, nil
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "home", page{Title: "Sign up", Data: homeData{Open: p.cfg.SignupsPerHour != 0}})
}

type homeData struct {
	Open        bool
	Name, Email string
}

// allowSignup applies the sign-up budgets, per network, then all
// together; a refusal comes with its status (403 closed, 429 over a
// budget).
func (p *Portal) allowSignup(r *http.Request) (int, error) {
	if p.cfg.SignupsPerHour == 0 {
		return http.StatusForbidden, errSignupClosed
	}
	now := p.cfg.Now()
	if !p.signups.Allow(p.clientIP(r), now) {
		return http.StatusTooManyRequests, errSignupRate
	}
	if p.allSignup != nil && !p.allSignup.AllowN(now, 1) {
		return http.StatusTooManyRequests, errSignupBusy
	}
	return http.StatusOK, nil
}

var (
	errSignupClosed = errors.New("sign-up is closed on this server: ask its operator for a key")
	errSignupRate   = errors.New("too many sign-ups from your network: try again in an hour")
	errSignupBusy   = errors.New("too many sign-ups on this server just now: try again later")
)

func (p *Portal) signupForm(w http.ResponseWriter, r *http.Request) {
	if !p.postedForm(w, r) {
		return
	}
	s, err := ParseSignupForm(r.PostForm)
	if err != nil {
		p.render(w, r, http.StatusBadRequest, "home", page{Title: "Sign up", Error: err.Error(),
			Data: homeData{Open: true, Name: trimTo(r.PostFormValue("name"), maxNameLen), Email: trimTo(r.PostFormValue("email"), maxEmailLen)}})
		return
	}
	if code, err := p.allowSignup(r); err != nil {
		p.fail(w, r, code, sentence(err))
		return
	}
	out, err := p.signup(r, s)
	if err != nil {
		p.log.Error("portal: sign-up", "err", err)
		p.fail(w, r, http.StatusInternalServerError, "The account could not be created. Please try again later.")
		return
	}
	r = p.signIn(w, r, out.Account, false)
	p.render(w, r, http.StatusCreated, "welcome", page{Title: "Your developer key", Data: p.welcome(out)})
}

func (p *Portal) signupJSON(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		httpx.WriteError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, "body longer than 4096 bytes")
		return
	}
	s, err := ParseSignupJSON(body)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if code, err := p.allowSignup(r); err != nil {
		httpx.WriteError(w, code, err.Error())
		return
	}
	out, err := p.signup(r, s)
	if err != nil {
		p.log.Error("portal: sign-up", "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, "the account could not be created")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusCreated, out)
}

func trimTo(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// sentence capitalises an error for a page.
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}
