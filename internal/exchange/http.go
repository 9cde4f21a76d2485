package exchange

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
)

// Limits on what a request may carry.
const (
	maxQuery = 2048
	maxBody  = 4096
	maxKey   = 64
)

// Op is what a VideoPhone request asks for.
type Op uint8

// The three operations of the VideoPhone protocol.
const (
	OpRegister Op = iota + 1
	OpUnregister
	OpLookup
)

// Request is a parsed VideoPhone (reg.cgi) request.
type Request struct {
	Op       Op
	Name     string
	Identity string // lowercase peer ID, for OpRegister
}

// ParseRequest reads the query of a VideoPhone request:
// username=U&identity=PEERID registers, identity=0 unregisters,
// friends=U looks up; anything else (time=..., which the sample adds
// against caches) is ignored.
func ParseRequest(rawQuery string) (Request, error) {
	if len(rawQuery) > maxQuery {
		return Request{}, errors.New("query longer than 2048 bytes")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Request{}, errors.New("malformed query string")
	}
	if q.Has("friends") {
		name := q.Get("friends")
		if err := CheckName(name); err != nil {
			return Request{}, err
		}
		return Request{Op: OpLookup, Name: name}, nil
	}
	if !q.Has("username") || !q.Has("identity") {
		return Request{}, errors.New("want username and identity (register; identity=0 unregisters) or friends (look up)")
	}
	name := q.Get("username")
	if err := CheckName(name); err != nil {
		return Request{}, err
	}
	if id := q.Get("identity"); id != "0" {
		peer, err := ParsePeerID(id)
		if err != nil {
			return Request{}, err
		}
		return Request{Op: OpRegister, Name: name, Identity: peer}, nil
	}
	return Request{Op: OpUnregister, Name: name}, nil
}

// Handler serves the exchange over HTTP.
type Handler struct {
	Registry *Registry
	// CheckKey returns nil for a developer key that may use the exchange,
	// ErrUnknownKey or ErrKeyRefused.
	CheckKey func(key string) error
}

// Router is where routes are added: an *http.ServeMux, or anything that
// records them.
type Router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Routes adds the exchange's routes to mux:
//
//	GET|POST /exchange/{key}?...                    the VideoPhone protocol (XML)
//	GET      /api/v1/exchange/{key}/names/{name}    look up (JSON)
//	PUT      /api/v1/exchange/{key}/names/{name}    register {"identity": PEERID}
//	DELETE   /api/v1/exchange/{key}/names/{name}    unregister
//	GET      /exchange/crossdomain.xml              Flash Player's policy for /exchange/
//	GET      /crossdomain.xml                       master policy: only files served as policies count
//
// A SWF from another site calls
// Security.loadPolicyFile("http://HOST/exchange/crossdomain.xml") before
// using the exchange; the master policy keeps every other path (the
// portal, with its cookies) closed to other sites' SWFs.
func (h *Handler) Routes(mux Router) {
	mux.HandleFunc("GET /crossdomain.xml", policy(`<site-control permitted-cross-domain-policies="by-content-type"/>`))
	mux.HandleFunc("GET /exchange/crossdomain.xml", policy(`<allow-access-from domain="*"/>`))
	mux.HandleFunc("GET /exchange/{key}", h.videoPhone)
	mux.HandleFunc("POST /exchange/{key}", h.videoPhone)
	mux.HandleFunc("GET /api/v1/exchange/{key}/names/{name}", h.jsonLookup)
	mux.HandleFunc("PUT /api/v1/exchange/{key}/names/{name}", h.jsonRegister)
	mux.HandleFunc("DELETE /api/v1/exchange/{key}/names/{name}", h.jsonUnregister)
	mux.HandleFunc("OPTIONS /api/v1/exchange/{key}/names/{name}", preflight)
}

func (h *Handler) checkKey(key string) error {
	if key == "" || len(key) > maxKey {
		return ErrUnknownKey
	}
	return h.CheckKey(key)
}

const xmlHeader = `<?xml version="1.0" encoding="utf-8"?>`

// videoPhone answers the sample's reg.cgi protocol, byte for byte: a
// refused registration is <update>false</update> with the reason in the
// X-Exchange-Error header, so the body stays what the sample parses.
func (h *Handler) videoPhone(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Cache-Control", "no-store")
	query := r.URL.RawQuery
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			xmlError(w, http.StatusRequestEntityTooLarge, "body longer than 4096 bytes")
			return
		}
		if len(body) > 0 {
			query = string(body)
		}
	}
	req, err := ParseRequest(query)
	if err != nil {
		xmlError(w, http.StatusBadRequest, trim(err))
		return
	}
	key := r.PathValue("key")
	if err := h.checkKey(key); err != nil {
		xmlError(w, keyStatus(err), trim(err))
		return
	}
	switch req.Op {
	case OpLookup:
		peer, ok := h.Registry.Lookup(key, req.Name)
		var b strings.Builder
		b.WriteString(xmlHeader + "<result><friend><user>")
		xml.EscapeText(&b, []byte(req.Name))
		b.WriteString("</user>")
		if ok {
			b.WriteString("<identity>" + peer + "</identity>")
		}
		b.WriteString("</friend></result>")
		writeXML(w, http.StatusOK, b.String())
		return
	case OpRegister:
		err = h.Registry.Register(key, req.Name, req.Identity, Anyone)
	case OpUnregister:
		// A live holder's name goes with its session: answered true,
		// since the sample unregisters right before it disconnects.
		if err = h.Registry.Unregister(key, req.Name, ""); errors.Is(err, ErrHeld) {
			w.Header().Set("X-Exchange-Error", trim(err))
			err = nil
		}
	}
	if err != nil {
		w.Header().Set("X-Exchange-Error", trim(err))
		writeXML(w, http.StatusOK, xmlHeader+"<result><update>false</update></result>")
		return
	}
	writeXML(w, http.StatusOK, xmlHeader+"<result><update>true</update></result>")
}

// NameView is the JSON API's answer.
type NameView struct {
	Username  string `json:"username"`
	Identity  string `json:"identity,omitempty"`
	Available bool   `json:"available"`
}

func (h *Handler) jsonName(w http.ResponseWriter, r *http.Request) (key, name string, ok bool) {
	cors(w)
	w.Header().Set("Cache-Control", "no-store")
	key, name = r.PathValue("key"), r.PathValue("name")
	if err := CheckName(name); err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return "", "", false
	}
	if err := h.checkKey(key); err != nil {
		jsonError(w, keyStatus(err), err)
		return "", "", false
	}
	return key, name, true
}

func (h *Handler) jsonLookup(w http.ResponseWriter, r *http.Request) {
	key, name, ok := h.jsonName(w, r)
	if !ok {
		return
	}
	peer, ok := h.Registry.Lookup(key, name)
	httpx.WriteJSON(w, http.StatusOK, NameView{Username: name, Identity: peer, Available: ok})
}

func (h *Handler) jsonRegister(w http.ResponseWriter, r *http.Request) {
	key, name, ok := h.jsonName(w, r)
	if !ok {
		return
	}
	var body struct {
		Identity string `json:"identity"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		jsonError(w, http.StatusBadRequest, errors.New(`body: want {"identity": "<64 hex digits>"}`))
		return
	}
	peer, err := ParsePeerID(body.Identity)
	if err == nil {
		err = h.Registry.Register(key, name, peer, Anyone)
	}
	if err != nil {
		jsonError(w, registerStatus(err), err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, NameView{Username: name, Identity: peer, Available: true})
}

func (h *Handler) jsonUnregister(w http.ResponseWriter, r *http.Request) {
	key, name, ok := h.jsonName(w, r)
	if !ok {
		return
	}
	if err := h.Registry.Unregister(key, name, ""); err != nil {
		jsonError(w, http.StatusConflict, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func registerStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotConnected):
		return http.StatusForbidden
	case errors.Is(err, ErrTaken):
		return http.StatusConflict
	case errors.Is(err, ErrKeyFull), errors.Is(err, ErrPeerFull):
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

func keyStatus(err error) int {
	if errors.Is(err, ErrKeyRefused) {
		return http.StatusForbidden
	}
	return http.StatusNotFound
}

// trim drops the package prefix from an error for people to read.
func trim(err error) string { return strings.TrimPrefix(err.Error(), "exchange: ") }

// cors lets pages of any origin use the exchange: it carries no
// credentials and answers nothing a peer could not learn by asking.
func cors(w http.ResponseWriter) { w.Header().Set("Access-Control-Allow-Origin", "*") }

func preflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Access-Control-Allow-Methods", "GET, PUT, DELETE")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

func policy(body string) http.HandlerFunc {
	doc := `<?xml version="1.0"?>` + "\n<cross-domain-policy>" + body + "</cross-domain-policy>\n"
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/x-cross-domain-policy")
		io.WriteString(w, doc)
	}
}

func writeXML(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func xmlError(w http.ResponseWriter, code int, msg string) {
	var b strings.Builder
	b.WriteString(xmlHeader + "<result><error>")
	xml.EscapeText(&b, []byte(msg))
	b.WriteString("</error></result>")
	writeXML(w, code, b.String())
}

func jsonError(w http.ResponseWriter, code int, err error) {
	httpx.WriteError(w, code, trim(err))
}
