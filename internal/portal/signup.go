package portal

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
	"github.com/stratus-rtmfp/stratus/store"
)

// Input limits, in bytes.
const (
	maxNameLen   = 100
	maxEmailLen  = 254
	maxSecretLen = 128
	maxJSONBody  = 4 << 10
)

// Signup is a validated sign-up.
type Signup struct {
	Name, Email string
}

// errInput is a problem with what the person typed, worded for them.
type errInput struct{ msg string }

func (e errInput) Error() string { return e.msg }

func inputErr(format string, args ...any) error { return errInput{fmt.Sprintf(format, args...)} }

// checkText validates one printable, length-limited field.
func checkText(field, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", inputErr("%s is required.", field)
	case len(v) > max:
		return "", inputErr("%s is longer than %d bytes.", field, max)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		return "", inputErr("%s contains characters that are not allowed.", field)
	}
	return v, nil
}

// ParseSignup validates a sign-up's name and e-mail address.
func ParseSignup(name, email string) (Signup, error) {
	var s Signup
	var err error
	if s.Name, err = checkText("Name", name, maxNameLen); err != nil {
		return Signup{}, err
	}
	if s.Email, err = checkText("E-mail", email, maxEmailLen); err != nil {
		return Signup{}, err
	}
	a, err := mail.ParseAddress(s.Email)
	if err != nil || a.Address != s.Email || a.Name != "" {
		return Signup{}, inputErr("E-mail must be a plain address such as ada@example.com.")
	}
	return s, nil
}

// ParseSignupForm reads the HTML form's fields; the terms must be
// accepted.
func ParseSignupForm(form url.Values) (Signup, error) {
	s, err := ParseSignup(form.Get("name"), form.Get("email"))
	if err != nil {
		return Signup{}, err
	}
	if form.Get("terms") != "accept" {
		return Signup{}, inputErr("Please read and accept the terms of service.")
	}
	return s, nil
}

// ParseSignupJSON reads {"name": ..., "email": ...}; unknown fields and
// trailing data are refused.
func ParseSignupJSON(body []byte) (Signup, error) {
	var req struct {
		Name  *string `json:"name"`
		Email *string `json:"email"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Signup{}, inputErr(`body must be a JSON object {"name": "...", "email": "..."}`)
	}
	if dec.More() {
		return Signup{}, inputErr("body has data after the JSON object")
	}
	if req.Name == nil || req.Email == nil {
		return Signup{}, inputErr(`"name" and "email" are required`)
	}
	return ParseSignup(*req.Name, *req.Email)
}

// Account secrets are "s1." + the account ID + "." + 64 random hex
// digits. The ID finds the account; only the SHA-256 of the random part
// is stored. (A variable so that a test can count the hashes.)
var secretHash = func(random string) []byte {
	h := sha256.Sum256([]byte(random))
	return h[:]
}

// noAccountHash is compared with when a secret names no account, so that
// the answer takes the same work as for a wrong secret.
var noAccountHash = make([]byte, sha256.Size)

// splitSecret returns the account ID and random part of a secret.
func splitSecret(secret string) (id, random string, ok bool) {
	if len(secret) > maxSecretLen {
		return "", "", false
	}
	parts := strings.Split(secret, ".")
	if len(parts) != 3 || parts[0] != "s1" || !store.ValidAccountID(parts[1]) || len(parts[2]) != 64 {
		return "", "", false
	}
	return parts[1], parts[2], true
}

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
	random := randomHex(32)
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
	return signedUp{Account: acct.ID, Secret: "s1." + acct.ID + "." + random, Key: key.ID,
		URL: p.rtmfpURL(r, key.ID), ExchangeURL: p.baseURL(r) + "/exchange/" + key.ID, Dashboard: p.baseURL(r) + "/dashboard"}, nil
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "home", page{Title: "Sign up", Data: homeData{Open: p.cfg.SignupsPerHour != 0}})
}

type homeData struct {
	Open        bool
	Name, Email string
}

// allowSignup applies the sign-up budgets: per network, then all
// together.
func (p *Portal) allowSignup(r *http.Request) error {
	if p.cfg.SignupsPerHour == 0 {
		return errSignupClosed
	}
	now := p.cfg.Now()
	if !p.signups.Allow(p.clientIP(r), now) {
		return errSignupRate
	}
	if p.allSignup != nil && !p.allSignup.AllowN(now, 1) {
		return errSignupBusy
	}
	return nil
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
	if err := p.allowSignup(r); err != nil {
		code := http.StatusTooManyRequests
		if errors.Is(err, errSignupClosed) {
			code = http.StatusForbidden
		}
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
	if err := p.allowSignup(r); err != nil {
		code := http.StatusTooManyRequests
		if errors.Is(err, errSignupClosed) {
			code = http.StatusForbidden
		}
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
