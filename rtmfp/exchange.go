package rtmfp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// RegisterName registers this connection's peer ID under name in the
// server's peer-ID exchange, so that other clients of the same developer
// key find it with LookupName (or through the exchange's web service). It
// works with Stratus (the stratus.exchange.register call); the name goes
// when this connection closes. A name held by another connected peer gets
// a *StatusError (NetConnection.Call.Failed) saying so.
func (nc *NetConnection) RegisterName(ctx context.Context, name string) error {
	_, err := nc.Call(ctx, "stratus.exchange.register", name)
	return err
}

// UnregisterName removes a name this connection registered.
func (nc *NetConnection) UnregisterName(ctx context.Context, name string) error {
	_, err := nc.Call(ctx, "stratus.exchange.unregister", name)
	return err
}

// LookupName returns the peer ID registered under name by a client of the
// same developer key that is connected now, or "" if there is none.
func (nc *NetConnection) LookupName(ctx context.Context, name string) (string, error) {
	res, err := nc.Call(ctx, "stratus.exchange.lookup", name)
	if err != nil {
		return "", err
	}
	if len(res) > 0 {
		if id, ok := res[0].(string); ok {
			return id, nil
		}
	}
	return "", nil
}

// HTTPExchange is a client of a peer-ID exchange web service that speaks
// the protocol of Adobe's VideoPhone sample (reg.cgi): Stratus's
// http://HOST:8080/exchange/KEY, or any script written for the sample.
type HTTPExchange struct {
	// URL is the service, e.g. "http://127.0.0.1:8080/exchange/KEY".
	URL string
	// Client sends the requests (default http.DefaultClient).
	Client *http.Client
}

// ErrExchangeRefused is a registration the service answered false.
var ErrExchangeRefused = errors.New("rtmfp: the exchange refused the registration")

// Register registers peerID under username.
func (x *HTTPExchange) Register(ctx context.Context, username, peerID string) error {
	return x.update(ctx, url.Values{"username": {username}, "identity": {peerID}})
}

// Unregister removes username (identity=0).
func (x *HTTPExchange) Unregister(ctx context.Context, username string) error {
	return x.update(ctx, url.Values{"username": {username}, "identity": {"0"}})
}

// Lookup returns the peer ID registered under username, or "" if the
// service says the user is not available.
func (x *HTTPExchange) Lookup(ctx context.Context, username string) (string, error) {
	var res exchangeResult
	if err := x.get(ctx, url.Values{"friends": {username}}, &res); err != nil {
		return "", err
	}
	if res.Friend == nil {
		return "", errors.New("rtmfp: the exchange's answer has no <friend>")
	}
	return strings.TrimSpace(res.Friend.Identity), nil
}

type exchangeResult struct {
	Update *string `xml:"update"`
	Friend *struct {
		User     string `xml:"user"`
		Identity string `xml:"identity"`
	} `xml:"friend"`
	Error string `xml:"error"`
}

func (x *HTTPExchange) update(ctx context.Context, q url.Values) error {
	var res exchangeResult
	if err := x.get(ctx, q, &res); err != nil {
		return err
	}
	if res.Update == nil {
		return errors.New("rtmfp: the exchange's answer has no <update>")
	}
	if strings.TrimSpace(*res.Update) != "true" {
		return ErrExchangeRefused
	}
	return nil
}

func (x *HTTPExchange) get(ctx context.Context, q url.Values, out *exchangeResult) error {
	u, err := url.Parse(x.URL)
	if err != nil {
		return err
	}
	all := u.Query()
	for k, v := range q {
		all[k] = v
	}
	u.RawQuery = all.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	cl := x.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if err := xml.Unmarshal(body, out); err != nil && resp.StatusCode == http.StatusOK {
		return fmt.Errorf("rtmfp: the exchange's answer is not XML: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		why := out.Error
		if why == "" {
			why = resp.Header.Get("X-Exchange-Error")
		}
		return fmt.Errorf("rtmfp: exchange: %s: %s", resp.Status, why)
	}
	if why := resp.Header.Get("X-Exchange-Error"); why != "" && out.Update != nil && strings.TrimSpace(*out.Update) != "true" {
		return fmt.Errorf("%w: %s", ErrExchangeRefused, why)
	}
	return nil
}
