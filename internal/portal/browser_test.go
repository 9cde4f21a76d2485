package portal

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// chromium finds the browser: Debian's chromium package, which .ci/run
// installs. Only a local run without it skips; CI fails instead.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on this CI machine: .ci/run must install Debian's chromium package")
	}
	t.Skip("no chromium here (apt-get install chromium): the browser test is skipped; CI runs it")
	return ""
}

// screenshotDir is where the test leaves its screenshots:
// $STRATUS_SCREENSHOTS if set, else a temporary folder (named in the log).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("STRATUS_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// A person's way through the portal in a real browser: sign up, see the
// key, use it, sign out and in again with the secret, see the chart,
// revoke the key; then the operator's page. No step uses JavaScript of the
// page (it has none); the test reads the DOM.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	shots := screenshotDir(t)
	e := newEnv(t, nil)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		}
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
	}
	// Every visible form control has a label.
	labelled := func(where string) {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(i => i.labels.length == 0).length`))
		if err != nil || n != 0 {
			t.Fatalf("%s: %d inputs without a label (%v)", where, n, err)
		}
	}

	// Sign up with the keyboard: Tab from the top of the page reaches the
	// name field after the skip link and the navigation.
	do("open the sign-up page", chromedp.Navigate(e.web.URL+"/"), chromedp.WaitVisible(chromedp.ID("name")))
	labelled("sign-up page")
	shot("01-signup")
	for range 6 {
		do("Tab", chromedp.KeyEvent("\t"))
	}
	if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`)); err != nil || focused != "name" {
		t.Fatalf("six Tabs from the top land on %q (%v), want the name field", focused, err)
	}
	do("sign up",
		chromedp.SendKeys(chromedp.ID("name"), "Ada's VideoPhone"),
		chromedp.SendKeys(chromedp.ID("email"), "ada@example.com"),
		chromedp.Click(chromedp.ID("terms")),
		chromedp.Click(chromedp.CSS(`form[action="/signup"] button`)),
		chromedp.WaitVisible(chromedp.ID("key")))
	key, secret, url := text("#key"), text("#secret"), text("#url")
	shot("02-welcome")
	if !strings.HasSuffix(url, "/"+key) || !strings.HasPrefix(secret, "s1.") {
		t.Fatalf("welcome page: key %q url %q secret %q", key, url, secret)
	}

	// Use the key: a client connects and registers in the exchange.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	nc, err := rtmfp.Connect(cctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("connecting with the key from the page: %v", err)
	}
	defer nc.Close()
	if err := nc.RegisterName(cctx, "ada"); err != nil {
		t.Fatal(err)
	}

	// Sign out, sign in again with the secret; the dashboard shows the
	// live session, the exchange name and the connect in the chart.
	do("sign out",
		chromedp.Navigate(e.web.URL+"/dashboard"),
		chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)),
		chromedp.WaitVisible(chromedp.ID("name")))
	do("sign in", chromedp.Navigate(e.web.URL+"/signin"), chromedp.WaitVisible(chromedp.ID("secret")))
	labelled("sign-in page")
	do("sign in",
		chromedp.SendKeys(chromedp.ID("secret"), secret),
		chromedp.Submit(chromedp.ID("secret")),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart`)))
	labelled("dashboard")
	shot("03-dashboard")
	desc, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#chart-desc"))) // not rendered, so no innerText
	if err != nil || !strings.Contains(desc, "Connects: 1.") {
		t.Fatalf("chart description %q (%v)", desc, err)
	}
	row := strings.Join(strings.Fields(text("table.keys tbody tr")), " ")
	if !strings.Contains(row, key) || !strings.Contains(row, "active 1 1 1 0") {
		t.Fatalf("key row %q: want active, 1 live session, 1 exchange name, 1 connect, 0 introductions", row)
	}

	// Revoke through the confirmation page; the client is closed.
	revoke := chromedp.CSS(`form[action="/dashboard/keys/` + key + `/revoke"] button`)
	do("revoke", chromedp.Click(chromedp.CSS(`a[href="/dashboard/keys/`+key+`/revoke"]`)), chromedp.WaitVisible(revoke))
	shot("04-confirm-revoke")
	do("confirm", chromedp.Click(revoke), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	shot("05-revoked")
	if notice, row := text("p.notice"), text("table.keys tbody tr"); !strings.Contains(notice, "Revoked key "+key) || !strings.Contains(row, "revoked") {
		t.Fatalf("after revoking: notice %q row %q", notice, row)
	}
	select {
	case <-nc.Done():
	case <-cctx.Done():
		t.Fatal("the revoked key's client is still connected")
	}

	// A phone-sized screen, then back to a desktop one.
	do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(e.web.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`main`)))
	shot("07-phone-dashboard")
	// Every cell of the keys table is on screen, not behind a sideways
	// scroll (as a table its state and actions were off the right edge).
	offscreen, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("table.keys td")].filter(td => td.getBoundingClientRect().right > window.innerWidth + 1).length`))
	if err != nil || offscreen != 0 {
		t.Fatalf("on a phone-sized screen %d cells of the keys table lie past the right edge (%v)", offscreen, err)
	}
	do("desktop", chromedp.EmulateViewport(1280, 900))

	// The operator's page.
	do("operator",
		chromedp.Navigate(e.web.URL+"/operator"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), testAdminToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS(`table`)))
	labelled("operator page")
	shot("06-operator")
	if main := text("main"); !strings.Contains(main, "ada@example.com") {
		t.Fatalf("operator page: %s", main)
	}

}
