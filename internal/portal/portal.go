// Package portal is the public web side of stratus: the developer sign-up
// page and its JSON twin, a developer's dashboard (keys, live sessions, a
// usage chart drawn on the server), the operator's pages (accounts,
// suspension, per-key quotas), and the peer-ID exchange's web service
// (mounted from server.Server.Exchange). Pages are server-rendered HTML
// that work without JavaScript; every form carries a CSRF token, cookies
// are HttpOnly, SameSite and Secure over HTTPS, sign-up is rate limited
// per source network, and every input is length-limited.
package portal

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/stratus-rtmfp/stratus/internal/exchange"
	"github.com/stratus-rtmfp/stratus/internal/httpx"
	"github.com/stratus-rtmfp/stratus/internal/ratelimit"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the portal.
type Config struct {
	Server *server.Server
	// Accounts is the server's store (store.Bolt or store.Memory).
	Accounts store.Accounts
	// AdminToken signs the operator in (the admin API's token); empty,
	// nobody can.
	AdminToken string
	// RTMFPPort is the UDP port clients connect to (shown in URLs; 1935
	// is left out of them). PublicAddresses, if any, name the host
	// clients reach (the first one is shown).
	RTMFPPort       uint16
	PublicAddresses []netip.AddrPort
	// PublicURL is where people reach the portal, e.g.
	// "https://stratus.example.com" behind a TLS proxy: its host goes into
	// the rtmfp:// and exchange URLs, and an https URL makes cookies
	// Secure. Empty: taken from each request.
	PublicURL string
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// X-Forwarded-Proto headers are believed.
	TrustedProxies []netip.Prefix
	// SignupsPerHour per source network (IPv4 /24, IPv6 /48); 0 turns
	// sign-up off, a negative value means no limit.
	SignupsPerHour int
	// SignupsPerHourTotal bounds sign-ups from all networks together
	// (bursts of as many), since one attacker may hold many networks (an
	// IPv6 /32 is 65,536 /48s); 0 means DefaultSignupsPerHourTotal, a
	// negative value no limit.
	SignupsPerHourTotal int
	// Terms is the operator's terms of service, shown at /terms and
	// accepted at sign-up.
	Terms  string
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Portal serves the web side.
type Portal struct {
	cfg       Config
	log       *slog.Logger
	pages     map[string]*template.Template
	adminTok  httpx.Token
	sessions  *sessions
	signups   *ratelimit.Prefix
	allSignup *rate.Limiter // nil: no limit
	signins   *ratelimit.Prefix
	keyWrites *ratelimit.Budget // per account
	publicURL *url.URL
}

// DefaultSignupsPerHourTotal is Config.SignupsPerHourTotal's default.
const DefaultSignupsPerHourTotal = 100

// Key edits (create, rename, rotate, revoke) per developer account: each
// is a database write, synced to disk.
const (
	keyWritesPerHour = 60
	keyWritesBurst   = 20
)

// DefaultTerms are shown when the operator gives none.
const DefaultTerms = `This service introduces RTMFP peers to each other so that they can talk directly. It is provided as is, without any warranty. The operator may suspend accounts and revoke keys that are used for abuse, and keeps the usage counters shown on your dashboard. Media never passes through this server.`

// New builds the portal.
func New(cfg Config) (*Portal, error) {
	if cfg.Server == nil || cfg.Accounts == nil {
		return nil, errors.New("portal: Server and Accounts are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RTMFPPort == 0 {
		cfg.RTMFPPort = 1935
	}
	if strings.TrimSpace(cfg.Terms) == "" {
		cfg.Terms = DefaultTerms
	}
	p := &Portal{cfg: cfg, log: cfg.Logger, adminTok: httpx.NewToken(cfg.AdminToken), sessions: newSessions(cfg.Now, maxSessions)}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("portal: the public URL must be http(s)://HOST[:PORT]")
		}
		p.publicURL = u
	}
	perHour := float64(cfg.SignupsPerHour)
	if cfg.SignupsPerHour < 0 {
		perHour = -1
	}
	p.signups = ratelimit.NewPrefix(perHour/3600, max(cfg.SignupsPerHour, 1), 4096)
	p.signins = ratelimit.NewPrefix(20.0/60, 20, 4096)
	p.keyWrites = ratelimit.NewBudget(keyWritesPerHour/3600.0, keyWritesBurst, 4096)
	if total := cfg.SignupsPerHourTotal; total >= 0 {
		if total == 0 {
			total = DefaultSignupsPerHourTotal
		}
		p.allSignup = rate.NewLimiter(rate.Limit(float64(total)/3600), total)
	}
	var err error
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return p, nil
}

// parsePages parses each page with the shared layout.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"since": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler returns the portal's routes, the exchange's included.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	p.routes(mux)
	ex := p.cfg.Server.Exchange()
	for _, prefix := range exchangeMounts {
		mux.Handle(prefix, ex)
	}

	// Browsers' cross-origin writes are refused before any handler runs
	// (Sec-Fetch-Site / Origin), except on the exchange, which carries no
	// credentials and is meant for pages of any origin.
	cop := http.NewCrossOriginProtection()
	cop.AddInsecureBypassPattern("/exchange/")
	cop.AddInsecureBypassPattern("/api/v1/exchange/")
	if p.publicURL != nil {
		_ = cop.AddTrustedOrigin(p.publicURL.Scheme + "://" + p.publicURL.Host)
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, r, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	return securityHeaders(cop.Handler(mux))
}

// exchangeMounts are the patterns under which the peer-ID exchange's own
// routes (exchange.Handler.Routes) are served.
var exchangeMounts = []string{"/exchange/", "/api/v1/exchange/", "GET /crossdomain.xml"}

// routes adds the portal's own routes to mux. (The README's endpoint
// table lists them all; a test holds it to that.)
func (p *Portal) routes(mux exchange.Router) {
	static, _ := fs.Sub(staticFS, "static")
	mux.HandleFunc("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)).ServeHTTP)
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc("POST /signup", p.signupForm)
	mux.HandleFunc("POST /api/v1/signup", p.signupJSON)
	mux.HandleFunc("GET /terms", p.terms)
	mux.HandleFunc("GET /signin", p.signinPage)
	mux.HandleFunc("POST /signin", p.signin)
	mux.HandleFunc("POST /signout", p.signout)
	mux.HandleFunc("GET /dashboard", p.dashboard)
	mux.HandleFunc("POST /dashboard/keys", p.createKey)
	mux.HandleFunc("GET /dashboard/keys/{key}/{action}", p.confirmKeyAction)
	mux.HandleFunc("POST /dashboard/keys/{key}/{action}", p.keyAction)
	mux.HandleFunc("GET /operator", p.operator)
	mux.HandleFunc("POST /operator/signin", p.operatorSignin)
	mux.HandleFunc("POST /operator/accounts/{id}/{action}", p.operatorAccount)
	mux.HandleFunc("POST /operator/keys/{key}/quota", p.operatorQuota)
}

// securityHeaders sets what every answer carries: no scripts at all, no
// framing, no sniffing, no referrers.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		if !strings.HasPrefix(r.URL.Path, "/exchange/") && !strings.HasPrefix(r.URL.Path, "/api/v1/exchange/") {
			hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
			hd.Set("X-Frame-Options", "DENY")
		}
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title    string
	CSRF     string
	SignedIn bool
	Operator bool
	Error    string
	Notice   string
	Data     any
}

// render writes a page. Pages may show secrets, so none is cached.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, code int, name string, pg page) {
	s := p.session(r)
	pg.SignedIn = s != nil && s.account != ""
	pg.Operator = s != nil && s.operator
	if pg.CSRF == "" {
		pg.CSRF = p.csrfToken(w, r)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := p.pages[name].ExecuteTemplate(w, "layout.html", pg); err != nil {
		p.log.Error("portal: rendering", "page", name, "err", err)
	}
}

// fail shows an error page.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	p.render(w, r, code, "error", page{Title: http.StatusText(code), Error: msg})
}

func (p *Portal) terms(w http.ResponseWriter, r *http.Request) {
	var paras []string
	for _, para := range strings.Split(strings.ReplaceAll(p.cfg.Terms, "\r\n", "\n"), "\n\n") {
		if para = strings.TrimSpace(para); para != "" {
			paras = append(paras, para)
		}
	}
	p.render(w, r, http.StatusOK, "terms", page{Title: "Terms of service", Data: paras})
}

// postedForm reads a form body of at most 8 KiB and checks its CSRF
// token; on failure it answers the request and returns false.
func (p *Portal) postedForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			p.fail(w, r, http.StatusRequestEntityTooLarge, "The form is too large.")
		} else {
			p.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		}
		return false
	}
	if !p.checkCSRF(r) {
		p.fail(w, r, http.StatusForbidden, "The form has expired. Please go back, reload the page and try again.")
		return false
	}
	return true
}
