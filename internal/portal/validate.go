package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
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
