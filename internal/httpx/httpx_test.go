package httpx

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestToken(t *testing.T) {
	tok := NewToken("0123456789abcdef")
	if !tok.Matches("0123456789abcdef") || tok.Matches("0123456789abcdeF") || tok.Matches("") || tok.Matches("0123456789abcdef0") {
		t.Fatal("a token matched wrongly")
	}
	if empty := NewToken(""); empty.Matches("") || empty.Matches("x") {
		t.Fatal("an empty token matched")
	}
	var zero Token
	if zero.Matches("") {
		t.Fatal("the zero Token matched")
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 418, `a "quoted" reason`)
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 418 ||
		rec.Header().Get("Content-Type") != "application/json" || body["error"] != `a "quoted" reason` {
		t.Fatalf("%d %q %s %v", rec.Code, rec.Header().Get("Content-Type"), rec.Body, err)
	}
}
