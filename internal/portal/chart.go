package portal

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/stratus-rtmfp/stratus/store"
)

// Chart geometry, in SVG user units (the image scales to its box).
const (
	chartW, chartH         = 720, 260
	padL, padR, padT, padB = 52, 16, 36, 34
	chartHours             = store.HistoryHours
)

// Series colours: both above 4.5:1 against the white background.
const (
	colConnects = "#1d4f91"
	colIntros   = "#9a4a00"
)

func sortSamples(s []store.UsageSample) []store.UsageSample {
	slices.SortFunc(s, func(a, b store.UsageSample) int { return a.Hour.Compare(b.Hour) })
	return s
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v uint64) uint64 {
	if v <= 1 {
		return 1
	}
	for m := uint64(1); ; m *= 10 {
		for _, f := range []uint64{1, 2, 5} {
			if f*m >= v {
				return f * m
			}
		}
	}
}

// chartSVG draws connects and introductions per hour over the week that
// ends at now, as an inline SVG: drawn on the server, so it needs no
// script, and described in its title and desc for screen readers (the page
// also has the numbers as a table). Only numbers and fixed text go into it.
func chartSVG(samples []store.UsageSample, now time.Time) template.HTML {
	end := now.UTC().Truncate(time.Hour)
	start := end.Add(-(chartHours - 1) * time.Hour)
	conn := make([]uint64, chartHours)
	intro := make([]uint64, chartHours)
	var totalC, totalI, top uint64
	for _, s := range samples {
		i := int(s.Hour.Sub(start) / time.Hour)
		if i < 0 || i >= chartHours {
			continue
		}
		conn[i] += s.Connects
		intro[i] += s.Introductions
		totalC += s.Connects
		totalI += s.Introductions
	}
	for i := range conn {
		top = max(top, conn[i], intro[i])
	}
	ymax := niceCeil(top)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(i int) float64 { return padL + plotW*float64(i)/float64(chartHours-1) }
	y := func(v uint64) float64 { return padT + plotH*(1-float64(v)/float64(ymax)) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	fmt.Fprintf(&b, `<title id="chart-title">Connects and introductions per hour, last 7 days (UTC)</title>`)
	fmt.Fprintf(&b, `<desc id="chart-desc">Connects: %d. Introductions: %d. From %s to %s UTC; the busiest hour had %d.</desc>`,
		totalC, totalI, start.Format("Jan 2 15:04"), end.Add(time.Hour).Format("Jan 2 15:04"), top)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, chartW, chartH)
	// Horizontal grid with value labels.
	for _, v := range []uint64{0, ymax / 2, ymax} {
		if v == 0 && ymax == 1 || v != 0 || ymax > 1 {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c8c8c8" stroke-width="1"/>`, padL, y(v), chartW-padR, y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="12" text-anchor="end" fill="#333333" font-family="sans-serif">%d</text>`, padL-6, y(v)+4, v)
		}
	}
	// A tick and a date at each midnight.
	for i := 0; i < chartHours; i++ {
		h := start.Add(time.Duration(i) * time.Hour)
		if h.Hour() != 0 {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e2e2e2" stroke-width="1"/>`, x(i), padT, x(i), chartH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="12" text-anchor="middle" fill="#333333" font-family="sans-serif">%s</text>`, x(i), chartH-padB+18, h.Format("Mon 2"))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555555" stroke-width="1"/>`, padL, chartH-padB, chartW-padR, chartH-padB)
	series := func(vals []uint64, colour, dash string) {
		var pts strings.Builder
		for i, v := range vals {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s stroke-linejoin="round"/>`, strings.TrimSpace(pts.String()), colour, dash)
	}
	series(conn, colConnects, "")
	series(intro, colIntros, ` stroke-dasharray="6 3"`)
	// Markers on the hours with activity: a single busy hour at the edge
	// of a quiet week is otherwise a hairline. Circles and squares, so the
	// series differ by shape too.
	for i := range conn {
		if conn[i] > 0 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, x(i), y(conn[i]), colConnects)
		}
		if intro[i] > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>`, x(i)-3.5, y(intro[i])-3.5, colIntros)
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="end" fill="#333333" font-family="sans-serif">now</text>`, chartW-padR, chartH-padB+30)
	// Legend: colour and dash, so it reads without colour too.
	fmt.Fprintf(&b, `<line x1="%d" y1="16" x2="%d" y2="16" stroke="%s" stroke-width="3"/>`, padL, padL+28, colConnects)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="13" fill="#1a1a1a" font-family="sans-serif">connects (%d)</text>`, padL+34, totalC)
	fmt.Fprintf(&b, `<line x1="%d" y1="16" x2="%d" y2="16" stroke="%s" stroke-width="3" stroke-dasharray="6 3"/>`, padL+200, padL+228, colIntros)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="13" fill="#1a1a1a" font-family="sans-serif">introductions (%d)</text>`, padL+234, totalI)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and fixed text only
}
