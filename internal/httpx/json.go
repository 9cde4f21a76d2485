// Package httpx holds what the server's HTTP sides share: the admin API
// (package server), the developer portal and the peer-ID exchange. It is
// internal so that the public server package exports none of it.
package httpx

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers with v as indented JSON (people read these answers
// with curl as often as programs do).
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the status is sent: a failed write cannot be answered
}

// WriteError answers {"error": msg}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}
